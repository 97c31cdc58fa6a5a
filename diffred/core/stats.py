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
