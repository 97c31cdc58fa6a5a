"""Statistics every study uses: confidence intervals (named for what they compute), the exact
sign test and the Benjamini–Hochberg correction.  Plain NumPy / SciPy on arrays of results.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- intervals
def t_interval(values) -> tuple[float, float, int]:
    """Mean, half-width of the 95% Student-t interval, and n, over the finite values
    (half-width NaN for n < 2: no interval).  For means over seeds or seed pairs."""
    from scipy import stats
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n < 2:
        return float(v.mean()), float("nan"), 1
    return (float(v.mean()), float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n)), n)


def z_interval(values, ddof: int = 1) -> tuple[float, float]:
    """Mean and 95% normal-approximation half-width ``1.96 std / sqrt(n)``: for many
    per-episode values (few-shot evaluation's convention).
    ``ddof=0`` is the precursor code's ``np.std`` (Channel_Importance_FSL test.py)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(1.96 * values.std(ddof=ddof) / np.sqrt(len(values)))


def seed_pair_bootstrap(pairs: dict, minus: dict | None = None, draws: int = 4000,
                        seed: int = 0) -> tuple[float, float, float]:
    """Mean of a statistic over seed pairs (minus the mean of ``minus`` over its pairs) and
    the 95% percentile interval from resampling the *seeds*, not the pairs.

    ``pairs`` maps ``(i, j)`` to a value: two runs of seeds i != j, or one pair at equal seeds
    (i, i) (e.g. P-T and RI-T of seed i).  Pairs share runs, so they are not independent; the
    seeds are.  One draw resamples the seeds with replacement (counts c); a pair (i, j), i != j,
    then weighs c_i c_j, a pair (i, i) weighs c_i, and each table's mean is the weighted mean
    (draws in which a table has no weight are skipped).  With ``minus`` the same resample
    serves both tables (seed-paired contrast).  The interval is NaN — no interval — with fewer
    than 3 seeds or fewer than 2 pairs in a table: a resample of one pair is that pair.

    Returns (estimate, lo, hi).
    """
    tables = [pairs] + ([minus] if minus is not None else [])
    point = [float(np.mean(list(t.values()))) if len(t) else float("nan") for t in tables]
    estimate = point[0] - (point[1] if minus is not None else 0.0)
    seeds = sorted({s for t in tables for key in t for s in key})
    if len(seeds) < 3 or any(len(t) < 2 for t in tables):
        return estimate, float("nan"), float("nan")
    index = {s: k for k, s in enumerate(seeds)}
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(seeds), len(seeds)),
                                   minlength=len(seeds)) for _ in range(draws)])   # (draws, S)
    means = []
    for t in tables:
        i = np.array([index[a] for a, _ in t])
        j = np.array([index[b] for _, b in t])
        w = np.where(i == j, counts[:, i], counts[:, i] * counts[:, j]).astype(float)
        total = w.sum(1)
        v = np.array(list(t.values()), float)
        means.append(np.where(total > 0, (w * v).sum(1) / np.maximum(total, 1), np.nan))
    stat = means[0] - (means[1] if minus is not None else 0.0)
    stat = stat[np.isfinite(stat)]
    lo, hi = np.quantile(stat, [0.025, 0.975])
    return estimate, float(lo), float(hi)


def paired_gap_bootstrap(full_correct, subset_correct, draws: int = 2000, seed: int = 0,
                         chunk: int = 250) -> dict:
    """The gap between a full-layer probe and subset probes scored on the same test images,
    with 95% percentile intervals from resampling the test images *and* the subsets.

    ``full_correct`` (M,) and ``subset_correct`` (S, M): whether each probe got each test
    image right (S subset seeds).  One draw resamples the M images with replacement — the
    same images for every probe, so the comparison stays paired and the full probe's own
    test-set noise enters — and the S subsets with replacement.  Returns {'relative',
    'relative_lo', 'relative_hi'} for 1 − mean subset accuracy / full accuracy and
    {'absolute', 'absolute_lo', 'absolute_hi'} for full − mean subset accuracy (in accuracy
    units), with ``n_images`` and ``n_subsets``; NaN intervals with fewer than 2 subsets.
    """
    full = np.asarray(full_correct, dtype=np.float64)
    sub = np.atleast_2d(np.asarray(subset_correct, dtype=np.float64))
    if full.ndim != 1 or sub.shape[1] != full.shape[0]:
        raise ValueError(f"paired_gap_bootstrap needs full (M,) and subsets (S, M) on the same "
                         f"images, got {full.shape} and {sub.shape}")
    M, S = full.shape[0], sub.shape[0]
    a_full, a_sub = full.mean(), sub.mean()
    out = {"relative": 1 - a_sub / a_full, "absolute": a_full - a_sub, "n_images": M,
           "n_subsets": S}
    if S < 2:
        return {**out, "relative_lo": np.nan, "relative_hi": np.nan, "absolute_lo": np.nan,
                "absolute_hi": np.nan}
    rng = np.random.default_rng(seed)
    rel, ab = [], []
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        weights = np.stack([np.bincount(rng.integers(0, M, M), minlength=M)
                            for _ in range(n)]).T / M                           # (M, n)
        picks = rng.integers(0, S, (n, S))                                     # (n, S)
        acc_full = full @ weights                                              # (n,)
        acc_subs = sub @ weights                                               # (S, n)
        acc_sub = np.take_along_axis(acc_subs.T, picks, axis=1).mean(1)         # (n,)
        rel.append(1 - acc_sub / acc_full)
        ab.append(acc_full - acc_sub)
    rel, ab = np.concatenate(rel), np.concatenate(ab)
    lo_r, hi_r = np.quantile(rel, [0.025, 0.975])
    lo_a, hi_a = np.quantile(ab, [0.025, 0.975])
    return {**out, "relative_lo": float(lo_r), "relative_hi": float(hi_r),
            "absolute_lo": float(lo_a), "absolute_hi": float(hi_a)}


def t95(n) -> np.ndarray:
    """Two-sided 95% Student-t factor for n samples (0 where n < 2: no interval)."""
    from scipy.stats import t
    n = np.asarray(n, float)
    return np.where(n > 1, t.ppf(0.975, np.maximum(n - 1, 1)), 0.0)


# --------------------------------------------------------------------------- tests
def sign_test_pvalues(n_pos, n_neg) -> np.ndarray:
    """Two-sided exact sign test per entry: P(a count as extreme as min(n_pos, n_neg) of
    n_pos + n_neg fair coin flips); 1 where there are no flips."""
    from scipy.stats import binom
    n_pos, n_neg = np.asarray(n_pos, np.int64), np.asarray(n_neg, np.int64)
    n = n_pos + n_neg
    p = 2 * binom.cdf(np.minimum(n_pos, n_neg), n, 0.5)
    return np.where(n == 0, 1.0, np.minimum(p, 1.0))


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values): reject at FDR level a where q <= a.

    q_(i) = min_{j >= i} min(1, m p_(j) / j) over the sorted p-values; equals
    ``scipy.stats.false_discovery_control(p, method="bh")`` (checked in the tests)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or not len(p):
        raise ValueError(f"benjamini_hochberg needs a non-empty 1-d array, got shape {p.shape}")
    if ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError("benjamini_hochberg: p-values must lie in [0, 1]")
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    out = np.empty(m)
    out[order] = q
    return out
