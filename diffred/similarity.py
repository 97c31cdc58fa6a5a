"""Representation similarity: linear CKA (Kornblith et al. 2019).

``linear_cka(X, Y)`` — biased HSIC estimator; ``debiased=True`` uses the unbiased HSIC
estimator of Song et al. (2012), as in Nguyen et al. (2021), so that CKA of independent
features is ≈ 0.  ``MinibatchCKA`` accumulates the unbiased estimator over minibatches for
large N (Nguyen et al. 2021).  X: (N, D1), Y: (N, D2); rows are the same examples.
"""
from __future__ import annotations

import numpy as np


def _gram(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X @ X.T


def _hsic_biased(K: np.ndarray, L: np.ndarray) -> float:
    n = K.shape[0]
    H = np.eye(n) - 1.0 / n
    return float(np.sum((H @ K @ H) * L))


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012), up to a constant that cancels in CKA."""
    n = K.shape[0]
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    # tr(KL) and 1ᵀKL1 in O(n²) (K, L symmetric) instead of forming K @ L in O(n³)
    trace_kl = float(np.sum(K * L))
    sum_kl = float(K.sum(0) @ L.sum(1))
    return float(trace_kl + K.sum() * L.sum() / ((n - 1) * (n - 2))
                 - 2 * sum_kl / (n - 2)) / (n * (n - 3))


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA between representations X (N, D1) and Y (N, D2) of the same N inputs."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same rows, got {X.shape[0]} and {Y.shape[0]}")
    if debiased and X.shape[0] < 4:
        raise ValueError("debiased CKA needs at least 4 examples")
    if not debiased:  # feature-space form: O(N D^2), no N x N matrices
        X = X - X.mean(0)
        Y = Y - Y.mean(0)
        xy = np.linalg.norm(X.T @ Y) ** 2
        return float(xy / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))
    K, L = _gram(X), _gram(Y)
    hsic = _hsic_unbiased
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def cka_matrix(reps: list, debiased: bool = False) -> np.ndarray:
    """Pairwise CKA between a list of representations of the same N inputs: (R, R)."""
    grams = [_gram(r - np.asarray(r).mean(0)) for r in reps]
    hsic = _hsic_unbiased if debiased else _hsic_biased
    self_sim = [hsic(G, G) for G in grams]
    R = len(reps)
    out = np.eye(R)
    for i in range(R):
        for j in range(i + 1, R):
            out[i, j] = out[j, i] = hsic(grams[i], grams[j]) / np.sqrt(self_sim[i] * self_sim[j])
    return out


class MinibatchCKA:
    """Unbiased linear CKA accumulated over minibatches (Nguyen et al. 2021).

    >>> m = MinibatchCKA()
    >>> for xb, yb in batches: m.update(xb, yb)      # xb (n, D1), yb (n, D2), n >= 4
    >>> m.value()
    """

    def __init__(self):
        self.xy = self.xx = self.yy = 0.0

    def update(self, X, Y) -> None:
        K, L = _gram(X), _gram(Y)
        self.xy += _hsic_unbiased(K, L)
        self.xx += _hsic_unbiased(K, K)
        self.yy += _hsic_unbiased(L, L)

    def value(self) -> float:
        return float(self.xy / np.sqrt(self.xx * self.yy))
