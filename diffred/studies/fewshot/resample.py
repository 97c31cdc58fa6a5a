"""How much a chapter-3 result owes to its one pool of images: half-sample replication.

Every episode interval of the chapter is conditional on one fixed pool (at most 100 images per
class): it says how well *this pool's* expected accuracy is known.  A new pool of the same
classes would move the result too.  Half-sample replication measures that (McCarthy 1969,
balanced repeated replication): draw half of every class's images without replacement, rerun
the same experiment on that half, repeat.  For a mean over the pool's images the variance of a
half-sample's value equals the variance of the whole pool's (the finite-population factor
1 − m/n = 1/2 cancels the halved size m = n/2), so the spread of the halves estimates how much
the pool moves the full result.  Each half's episodes add their own noise, which is subtracted
(a method-of-moments estimate, never below 0).

:func:`pool_spread` measures it for the 1%-vs-all difference of
:func:`~diffred.studies.fewshot.method.fraction_curves`; the claim's verdict
(:func:`diffred.studies.fewshot.paper.one_percent_verdict`) adds it to the episode variance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.core.cache import cached_table
from diffred.studies.fewshot.method import Pool, fraction_curves


def half_indices(y, rng: np.random.Generator) -> np.ndarray:
    """Half of every class's items (``len // 2``), drawn without replacement, sorted."""
    y = np.asarray(y)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:(y == c).sum() // 2]
                                   for c in np.unique(y)]))


@cached_table("fewshot")
def pool_spread(pool: Pool, shots=(1,), fraction: float = 0.01, *, n_way: int = 5,
                n_query: int = 15, n_halves: int = 20, n_episodes: int = 200, seed: int = 0,
                classifier: str = "lr", device: str | None = None) -> pd.DataFrame:
    """The pool's share of the uncertainty of the oracle top-``fraction`` vs all-dimensions
    difference, per shot count, by half-sample replication.

    Parameters
    ----------
    pool : Pool
        The episode pool.
    shots : sequence of int
        Shot counts K (a K whose K + ``n_query`` images per class a half cannot hold is left
        out).
    fraction : float
        The fraction of dimensions kept (the paper's 1%).
    n_way, n_query, classifier
        As in :func:`~diffred.studies.fewshot.method.fraction_curves`.
    n_halves : int
        Halves drawn (≥ 2).
    n_episodes : int
        Episodes per half.
    seed : int
        Seed of the halves and of their episodes.
    device : str, optional
        Where the episodes are solved.

    Returns
    -------
    DataFrame
        One row per shot count served: model, dataset, n_way, shots, fraction, n_halves,
        n_episodes, half_mean (mean difference over halves), half_var (their variance),
        episode_var (mean squared episode standard error of a half), pool_se
        (sqrt(max(0, half_var − episode_var)): the pool's standard error of the difference).
    """
    if n_halves < 2:
        raise ValueError(f"n_halves must be >= 2 (a variance needs two halves), got {n_halves}")
    rng = np.random.default_rng([seed, 3])
    halves = [pool.take(half_indices(pool.y, rng), "half", half=b) for b in range(n_halves)]
    rows = []
    for K in shots:
        values, noise = [], []
        for b, half in enumerate(halves):
            t = fraction_curves.uncached(half, (K,), (fraction, 1.0), n_way=n_way,
                                         n_query=n_query, n_episodes=n_episodes,
                                         seed=seed + 1000 * (b + 1), classifier=classifier,
                                         device=device)
            at = t[(t.ranking == "oracle") & np.isclose(t.fraction_requested, fraction)] \
                if len(t) else t
            if at.empty:            # a half cannot serve K shots
                break
            values.append(float(at.diff_full.iloc[0]))
            noise.append(float(at.diff_full_ci95.iloc[0] / 1.96) ** 2)
        if len(values) < n_halves:
            continue
        half_var, episode_var = float(np.var(values, ddof=1)), float(np.mean(noise))
        rows.append({"model": pool.meta["model"], "dataset": pool.meta["dataset"],
                     "n_way": min(n_way, pool.n_classes), "shots": K, "fraction": fraction,
                     "n_halves": n_halves, "n_episodes": n_episodes,
                     "half_mean": float(np.mean(values)), "half_var": half_var,
                     "episode_var": episode_var,
                     "pool_se": float(np.sqrt(max(0.0, half_var - episode_var)))})
    return pd.DataFrame(rows, columns=["model", "dataset", "n_way", "shots", "fraction",
                                       "n_halves", "n_episodes", "half_mean", "half_var",
                                       "episode_var", "pool_se"])
