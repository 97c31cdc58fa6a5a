"""Representation similarity: linear CKA between representations, Pearson ρ between neurons.

``linear_cka(X, Y)`` — biased HSIC estimator (Kornblith et al. 2019); ``debiased=True`` uses the
unbiased HSIC estimator of Song et al. (2012), as in Nguyen et al. (2021), so that CKA of
independent features is ≈ 0.  ``MinibatchCKA`` accumulates the unbiased estimator over
minibatches for large N (Nguyen et al. 2021).  X: (N, D1), Y: (N, D2); rows are the same
examples.

``neuron_correlation(chunks)`` — Pearson ρ (D, D) between the D columns of a matrix streamed in
row chunks (:class:`StreamingCorrelation`: float64 sums and cross-products, never a dense
rows x neurons float64 matrix); ``correlation_linkage(corr)`` — average-linkage hierarchy of
the columns on 1 − |ρ| (Dalvi et al. 2020).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from diffred.core.device import default_device


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
    """Linear CKA between two representations of the same N inputs.

    The biased HSIC estimator (Kornblith et al. 2019) is computed in feature space, O(N D²) with
    no N x N matrix; ``debiased=True`` uses the unbiased HSIC estimator of Song et al. (2012)
    on the N x N Gram matrices, as in Nguyen et al. (2021), so that CKA of independent features
    is ≈ 0.

    Parameters
    ----------
    X : array-like of shape (N, D1)
        First representation, one row per input (computed in float64).
    Y : array-like of shape (N, D2)
        Second representation, rows in the same order as X.
    debiased : bool, default False
        Use the unbiased HSIC estimator (needs N >= 4).

    Returns
    -------
    float
        The CKA similarity: in [0, 1] for the biased estimator; the debiased one may be
        slightly negative.
    """
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
    """Pairwise linear CKA between R representations of the same N inputs.

    Computed on the N x N Gram matrices of the centred representations (memory O(R N²)).

    Parameters
    ----------
    reps : list of R array-like of shape (N, D_r)
        The representations, rows in the same input order (widths D_r may differ).
    debiased : bool, default False
        Use the unbiased HSIC estimator (Song et al. 2012), as :func:`linear_cka` does.

    Returns
    -------
    ndarray of shape (R, R), float64
        Symmetric, ones on the diagonal; entry (i, j) is the CKA of ``reps[i]`` and ``reps[j]``.
    """
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
    """Unbiased linear CKA accumulated over minibatches, for large N (Nguyen et al. 2021).

    Each minibatch adds its unbiased HSIC estimates (Song et al. 2012); :meth:`value` is
    ``xy / sqrt(xx * yy)``.

    Attributes
    ----------
    xy, xx, yy : float
        Sums over the minibatches seen of HSIC(K, L), HSIC(K, K) and HSIC(L, L), with K and L
        the Gram matrices of a minibatch of X and of Y (0.0 before the first).

    Examples
    --------
    >>> m = MinibatchCKA()
    >>> for xb, yb in batches: m.update(xb, yb)      # xb (n, D1), yb (n, D2), n >= 4
    >>> m.value()
    """

    def __init__(self):
        self.xy = self.xx = self.yy = 0.0

    def update(self, X, Y) -> None:
        """Add one minibatch.

        Parameters
        ----------
        X : array-like of shape (n, D1)
            The minibatch's first representation (n >= 4; computed in float64).
        Y : array-like of shape (n, D2)
            Its second representation, rows in the same input order.
        """
        K, L = _gram(X), _gram(Y)
        self.xy += _hsic_unbiased(K, L)
        self.xx += _hsic_unbiased(K, K)
        self.yy += _hsic_unbiased(L, L)

    def value(self) -> float:
        """The CKA over every minibatch added so far.

        Returns
        -------
        float
            ``xy / sqrt(xx * yy)``.
        """
        return float(self.xy / np.sqrt(self.xx * self.yy))


# --------------------------------------------------------------------------- neuron correlation
class StreamingCorrelation:
    """Pearson correlation of D variables accumulated over row chunks.

    Keeps n, Σx (D,) and Σ(x−s)(x−s)ᵀ (D, D) in float64, where s is the first chunk's mean (a
    shift that avoids cancellation).  Each chunk's cross-product is one symmetric rank-k update
    (BLAS ``ssyrk`` on CPU, float64 matmul on CUDA); memory is O(D² + chunk·D).
    """

    def __init__(self, device: str | None = None):
        self.device = device or default_device()
        self.n, self.shift, self.sum, self.cross = 0, None, None, None

    def update(self, chunk: np.ndarray) -> None:
        """chunk: (n, D) float array of n new rows."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.shift is None:
            D = chunk.shape[1]
            self.shift = chunk.mean(0)
            self.sum = np.zeros(D)
            self.cross = np.zeros((D, D))
        centred = chunk - self.shift
        self.n += len(chunk)
        self.sum += centred.sum(0, dtype=np.float64)
        if self.device.startswith("cuda"):
            import torch
            c = torch.as_tensor(centred, device=self.device, dtype=torch.float64)
            self.cross += (c.T @ c).cpu().numpy()
        else:
            from scipy.linalg.blas import ssyrk
            # upper triangle of centredᵀ centred into a reused float32 (D, D) buffer
            self._block = ssyrk(1.0, np.asfortranarray(centred), trans=1, lower=0, beta=0.0,
                                c=getattr(self, "_block", None), overwrite_c=1)
            self.cross += self._block

    def correlation(self) -> np.ndarray:
        """(D, D) float64 correlation; constant neurons correlate 0 with every other one.

        Reuses the cross-product buffer (the accumulator is consumed)."""
        if self.n < 2:
            raise ValueError(f"correlation needs at least 2 rows, got {self.n}")
        C, self.cross, self._block = self.cross, None, None
        mean = self.sum / self.n
        if not self.device.startswith("cuda"):        # mirror the BLAS upper triangle, by blocks
            for i in range(0, len(C), 1024):
                j = min(i + 1024, len(C))
                diag = C[i:j, i:j]
                C[i:j, i:j] = np.triu(diag) + np.triu(diag, 1).T
                C[i:j, :i] = C[:i, i:j].T
        for i in range(0, len(C), 1024):              # centred cross-products, in row blocks
            C[i:i + 1024] -= self.n * np.outer(mean[i:i + 1024], mean)
        sd = np.sqrt(np.clip(np.diag(C), 0, None))
        inv = np.where(sd > 1e-12 * max(sd.max(), 1e-300), 1.0 / np.where(sd > 0, sd, 1), 0.0)
        for i in range(0, len(C), 1024):
            C[i:i + 1024] *= inv[i:i + 1024, None] * inv[None, :]
        np.clip(C, -1.0, 1.0, out=C)
        np.fill_diagonal(C, 1.0)
        return C


def neuron_correlation(chunks: Iterable[np.ndarray], device: str | None = None) -> np.ndarray:
    """Pearson ρ (D, D) float64 between the D columns of row chunks (n_i, D) (streamed)."""
    acc = StreamingCorrelation(device)
    for chunk in chunks:
        acc.update(chunk)
    return acc.correlation()


def correlation_linkage(corr: np.ndarray, overwrite: bool = True) -> np.ndarray:
    """Average-linkage hierarchy of neurons on the distance 1 − |ρ|.

    corr: (D, D) correlation (overwritten in place unless ``overwrite=False``).
    Returns the scipy linkage matrix Z (D−1, 4)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform
    dist = corr if overwrite else corr.copy()
    np.abs(dist, out=dist)
    np.subtract(1.0, dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(dist, checks=False)       # (D(D−1)/2,) float64
    del dist, corr
    return linkage(condensed, method="average")
