"""Chapter 3's pipelines: :mod:`diffred.studies.fewshot.method`'s cached experiments run over
every model × dataset pool, tables concatenated.

Each verb loops over the pools (and over the episode budgets of :func:`by_cost`) and calls the
cached functions of :mod:`~diffred.studies.fewshot.method` with the arguments the chapter
passes, so the cache keys are those of the calls themselves.  The one step between two runs is
:func:`select_mask_settings`, the fixed rule that turns the selection runs' scores into the
settings the report runs use.

:func:`load_pools` — every model × dataset pool;
:func:`curve_fractions` — the fraction grid with the paper's 1% and all dimensions added;
:func:`by_cost` — shot counts grouped by episode budget;
:func:`run_fraction_curves`, :func:`run_two_way_curves` — fraction sweeps, N-way and 2-way;
:func:`run_pool_spread` — how much the pool itself moves the 1%-vs-all difference;
:func:`run_precursor_two_way` — the precursor's oracle re-weighting;
:func:`run_mask_selection`, :func:`select_mask_settings`, :func:`run_mask_comparison` — soft
masks scored on the selection parts, the settings chosen there, the masks on the report parts.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from diffred.studies.fewshot import method as fewshot
from diffred.studies.fewshot.paper import PAPER_FRACTION
from diffred.studies.fewshot.resample import pool_spread


def load_pools(models: Sequence[str], datasets: Sequence[str], *, split: str,
               n_per_class: int, seed: int, resolution: int, views: int,
               view_candidates_per_class: int, device: str | None = None) -> dict:
    """Every model × dataset pool (:func:`~diffred.studies.fewshot.method.load_pool`).

    Parameters
    ----------
    models, datasets : sequence of str
        Short names; the pools are built model by model, dataset by dataset.
    split, n_per_class, seed, resolution, views, view_candidates_per_class, device
        Passed to :func:`~diffred.studies.fewshot.method.load_pool` (``progress=False``).

    Returns
    -------
    dict
        ``(model, dataset) -> Pool``, in that order.
    """
    return {(m, d): fewshot.load_pool(m, d, split=split, n_per_class=n_per_class, seed=seed,
                                      resolution=resolution, views=views, device=device,
                                      view_candidates_per_class=view_candidates_per_class,
                                      progress=False)
            for m in models for d in datasets}


def curve_fractions(fractions: Sequence[float]) -> list[float]:
    """The fraction grid of the sweeps: ``fractions`` with the paper's 1%
    (:data:`~diffred.studies.fewshot.paper.PAPER_FRACTION`) and 1.0 (all dimensions) added.

    Parameters
    ----------
    fractions : sequence of float
        Fractions of the dimensions to keep.

    Returns
    -------
    list of float
        Sorted, without duplicates.
    """
    return sorted(set(fractions) | {PAPER_FRACTION, 1.0})


def by_cost(shots: Sequence[int], n_episodes: int,
            n_episodes_high_shot: int) -> list[tuple[list[int], int]]:
    """Shot counts grouped by episode budget: 1-shot cells get ``n_episodes``; the costlier
    K > 1 cells get ``n_episodes_high_shot``.

    Parameters
    ----------
    shots : sequence of int
        Shot counts K.
    n_episodes, n_episodes_high_shot : int
        Episodes per 1-shot cell and per cell with K > 1.

    Returns
    -------
    list of (list of int, int)
        ``(shot counts, episodes)`` pairs, empty groups left out (1-shot group first).
    """
    return [(g, e) for g, e in (([k for k in shots if k == 1], n_episodes),
                                ([k for k in shots if k > 1], n_episodes_high_shot)) if g]


def run_fraction_curves(pools: Mapping, shots: Sequence[int], fractions: Sequence[float], *,
                        n_way: int, n_query: int, n_episodes: int, n_episodes_high_shot: int,
                        seed: int, device: str | None = None) -> pd.DataFrame:
    """:func:`~diffred.studies.fewshot.method.fraction_curves` of every pool, N-way, with the
    episode budgets of :func:`by_cost`.

    Parameters
    ----------
    pools : mapping
        ``(model, dataset) -> Pool`` (:func:`load_pools`).
    shots : sequence of int
        Shot counts K.
    fractions : list of float
        The fraction grid (:func:`curve_fractions`).
    n_way, n_query, seed, device
        Passed on.
    n_episodes, n_episodes_high_shot : int
        Episodes per 1-shot cell and per cell with K > 1.

    Returns
    -------
    DataFrame
        The rows of every call, pool by pool (columns of
        :func:`~diffred.studies.fewshot.method.fraction_curves`: model, weights, dataset,
        subset, seed, classifier, n_way, shots, ranking, fraction_requested, k, fraction,
        accuracy, ci95, diff_full, diff_full_ci95, n_episodes).
    """
    return pd.concat([fewshot.fraction_curves(pool, ks, fractions, n_way=n_way,
                                              n_query=n_query, n_episodes=e, seed=seed,
                                              device=device)
                      for pool in pools.values()
                      for ks, e in by_cost(shots, n_episodes, n_episodes_high_shot)],
                     ignore_index=True)


def run_pool_spread(pools: Mapping, shots: Sequence[int], *, n_way: int, n_query: int,
                    n_halves: int, n_episodes: int, seed: int,
                    device: str | None = None) -> pd.DataFrame:
    """:func:`~diffred.studies.fewshot.resample.pool_spread` of every pool at the paper's
    fraction: how much the pool itself moves the 1%-vs-all difference.

    Parameters
    ----------
    pools : mapping
        ``(model, dataset) -> Pool`` (:func:`load_pools`).
    shots : sequence of int
        Shot counts K.
    n_way, n_query, seed, device
        Passed on.
    n_halves, n_episodes : int
        Half-samples of each pool, and episodes per half.

    Returns
    -------
    DataFrame
        The rows of every pool (columns of
        :func:`~diffred.studies.fewshot.resample.pool_spread`).
    """
    return pd.concat([pool_spread(pool, tuple(shots), PAPER_FRACTION, n_way=n_way,
                                  n_query=n_query, n_halves=n_halves, n_episodes=n_episodes,
                                  seed=seed, device=device) for pool in pools.values()],
                     ignore_index=True)


def run_precursor_two_way(pools: Mapping, shots: Sequence[int], *, n_query: int,
                          n_episodes: int, seed: int, device: str | None = None
                          ) -> pd.DataFrame:
    """:func:`~diffred.studies.fewshot.method.precursor_two_way` of every pool.

    Parameters
    ----------
    pools : mapping
        ``(model, dataset) -> Pool``.
    shots : sequence of int
        Shot counts K of the 2-way episodes.
    n_query, n_episodes, seed, device
        Passed on.

    Returns
    -------
    DataFrame
        One row per pool, shots and method ("none", "oracle"): model, weights, dataset,
        subset, seed, n_way, shots, method, accuracy, ci95, gain, gain_ci95, n_episodes.
    """
    return pd.concat([fewshot.precursor_two_way(pool, shots, n_query=n_query,
                                                n_episodes=n_episodes, seed=seed,
                                                device=device)
                      for pool in pools.values()], ignore_index=True)


def run_two_way_curves(pools: Mapping, shots: Sequence[int], fractions: Sequence[float], *,
                       n_query: int, n_episodes: int, seed: int,
                       device: str | None = None) -> pd.DataFrame:
    """:func:`~diffred.studies.fewshot.method.fraction_curves` of every pool in 2-way episodes
    with the precursor's interval (population std, ``ci_ddof=0``).

    Parameters
    ----------
    pools : mapping
        ``(model, dataset) -> Pool``.
    shots : sequence of int
        Shot counts K.
    fractions : list of float
        The fraction grid (:func:`curve_fractions`).
    n_query, n_episodes, seed, device
        Passed on (every cell gets ``n_episodes``).

    Returns
    -------
    DataFrame
        The columns of :func:`run_fraction_curves`, ``n_way`` = 2.
    """
    return pd.concat([fewshot.fraction_curves(pool, shots, fractions, n_way=2,
                                              n_query=n_query, n_episodes=n_episodes,
                                              seed=seed, ci_ddof=0, device=device)
                      for pool in pools.values()], ignore_index=True)


def run_mask_selection(parts: Mapping, shots: Sequence[int], shrinks: Sequence[float],
                       topk_fractions: Sequence[float], *, n_way: int, n_query: int,
                       n_episodes: int, seed: int, device: str | None = None) -> pd.DataFrame:
    """Every candidate setting of the masks, scored on the **selection** part of every pool
    (:func:`~diffred.studies.fewshot.method.soft_mask_comparison`, no references).

    Parameters
    ----------
    parts : mapping
        ``(model, dataset) -> (selection part, report part)``
        (:func:`~diffred.studies.fewshot.method.split_pool`); only the selection parts are read.
    shots : sequence of int
        Shot counts K.
    shrinks, topk_fractions : sequence of float
        The candidate grids.
    n_way, n_query, n_episodes, seed, device
        Passed on.

    Returns
    -------
    DataFrame
        The rows of every call (columns of
        :func:`~diffred.studies.fewshot.method.soft_mask_comparison`: model, weights,
        dataset, subset, seed, part, classifier, n_way, shots, method, shrink, topk_fraction,
        accuracy, ci95, gain, gain_ci95, views, topk, n_episodes).
    """
    return pd.concat([fewshot.soft_mask_comparison(sel, shots, n_way=n_way, n_query=n_query,
                                                   n_episodes=n_episodes, seed=seed,
                                                   shrinks=shrinks,
                                                   topk_fractions=topk_fractions,
                                                   references=False, device=device)
                      for sel, _ in parts.values()], ignore_index=True)


def select_mask_settings(selection: pd.DataFrame, shrinks, topk_fractions,
                         tie: float = 1e-3) -> tuple[dict, pd.DataFrame]:
    """The rule fixing the soft mask's two settings, applied to *selection* episodes only.

    ``selection``: :func:`diffred.studies.fewshot.method.soft_mask_comparison` rows of the
    selection parts
    (every model/dataset, shots, classifier).  Score of a candidate = its mean accuracy over
    all those cells.  ``shrink``: the best score of "soft mask (support)"; then
    ``topk_fraction``: the best score of "hard top-k (support)" at that shrink.  Candidates
    within ``tie`` (0.1 points) of the best are tied; a tie goes to the value listed first in
    the grid (the grids start with the precursor's / paper's values: shrink 0, top 1%).
    Returns ({"shrink": s, "topk_fraction": f}, table of every candidate's score).
    """
    def pick(rows, column, grid):
        score = rows.groupby(column).accuracy.mean().reindex(list(grid))
        if score.isna().any():
            raise ValueError(f"selection table lacks {column} values "
                             f"{list(score.index[score.isna()])}")
        best = score.max()
        chosen = next(v for v in grid if score[v] >= best - tie)
        return chosen, score

    soft = selection[selection.method == "soft mask (support)"]
    shrink, soft_score = pick(soft, "shrink", shrinks)
    hard = selection[(selection.method == "hard top-k (support)")
                     & np.isclose(selection.shrink, shrink)]
    topk, hard_score = pick(hard, "topk_fraction", topk_fractions)
    cells = len(soft) // len(list(shrinks))
    table = pd.concat([
        pd.DataFrame({"setting": "shrink", "value": soft_score.index,
                      "method scored": "soft mask (support)",
                      "mean selection accuracy": soft_score.values}),
        pd.DataFrame({"setting": "topk_fraction", "value": hard_score.index,
                      "method scored": f"hard top-k (support), shrink = {shrink:g}",
                      "mean selection accuracy": hard_score.values})], ignore_index=True)
    table["chosen"] = [(s == "shrink" and v == shrink) or (s == "topk_fraction" and v == topk)
                       for s, v in zip(table.setting, table.value)]
    table["cells averaged"] = cells
    return {"shrink": float(shrink), "topk_fraction": float(topk)}, table


def run_mask_comparison(parts: Mapping, shots: Sequence[int], choice: Mapping, *, n_way: int,
                        n_query: int, n_episodes: int, n_episodes_high_shot: int, seed: int,
                        device: str | None = None) -> pd.DataFrame:
    """No mask, augmented views, hard and soft masks with the chosen settings, and the oracle
    soft mask, on the **report** part of every pool, with the episode budgets of
    :func:`by_cost`.

    Parameters
    ----------
    parts : mapping
        ``(model, dataset) -> (selection part, report part)``; only the report parts are
        read.
    shots : sequence of int
        Shot counts K.
    choice : mapping
        ``{"shrink": s, "topk_fraction": f}`` from
        :func:`select_mask_settings`.
    n_way, n_query, seed, device
        Passed on.
    n_episodes, n_episodes_high_shot : int
        Episodes per 1-shot cell and per cell with K > 1.

    Returns
    -------
    DataFrame
        The columns of :func:`run_mask_selection`, every method of
        :data:`~diffred.studies.fewshot.method.METHODS`.
    """
    return pd.concat([fewshot.soft_mask_comparison(rep, ks, n_way=n_way, n_query=n_query,
                                                   n_episodes=e, seed=seed,
                                                   shrinks=[choice["shrink"]],
                                                   topk_fractions=[choice["topk_fraction"]],
                                                   device=device)
                      for _, rep in parts.values()
                      for ks, e in by_cost(shots, n_episodes, n_episodes_high_shot)],
                     ignore_index=True)
