"""Linear probes: multinomial L2 logistic regression, batched over many feature views.

One call fits B independent probes — on B column subsets or B projections of the same
features — as a single torch problem (CPU or GPU).  The objective is scikit-learn's
``LogisticRegression(C)``: ``C * sum_i CE(x_i W + b, y_i) + ||W||^2 / 2`` (intercept not
penalised), on features standardised with the training mean / std (``standardize=True``;
compare against ``make_pipeline(StandardScaler(), LogisticRegression(C))``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeResult:
    """accuracy: (B,) test accuracy; per_class: (B, C) recall per class; k: (B,) widths."""
    accuracy: np.ndarray
    per_class: np.ndarray
    k: np.ndarray


def _torch():
    import torch
    return torch


def fit_logreg(Z, y, n_classes: int, C: float = 1.0, max_iter: int = 500,
               tol: float = 1e-4):
    """Fit B multinomial logistic regressions jointly.

    Z: (B, N, k) float tensor; y: (N,) int64 tensor (shared labels).
    Returns W (B, k, n_classes), b (B, n_classes).
    """
    torch = _torch()
    B, N, k = Z.shape
    W = torch.zeros(B, k, n_classes, device=Z.device, dtype=Z.dtype, requires_grad=True)
    b = torch.zeros(B, 1, n_classes, device=Z.device, dtype=Z.dtype, requires_grad=True)
    target = y.view(1, N).expand(B, N).reshape(-1)
    reg = 0.5 / (C * N)

    def loss():
        logits = torch.baddbmm(b, Z, W)                       # (B, N, C)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), target,
                                                 reduction="sum") / N + reg * (W * W).sum()

    _minimize(loss, [W, b], max_iter, tol)
    return W.detach(), b.detach().view(B, n_classes)


def _minimize(loss, params: list, max_iter: int, tol: float) -> None:
    """Full-batch L-BFGS with a strong-Wolfe line search on ``loss()`` (a closure).

    Stops, as scikit-learn's lbfgs does, when the largest gradient entry is below ``tol``
    (the loss is a sum of independent problems, so that is every problem's own criterion),
    or after ``max_iter`` iterations."""
    torch = _torch()
    opt = torch.optim.LBFGS(params, lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=tol, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)


def fit_logreg_masked(X, y, masks, n_classes: int, C: float = 1.0, max_iter: int = 500,
                      tol: float = 1e-4):
    """Fit B multinomial logistic regressions on B column subsets of the same X jointly.

    X: (N, D) float tensor; y: (N,) int64; masks: (B, D) bool — probe b sees the columns where
    ``masks[b]`` is True.  All probes share one (N, D) x (D, B*C) matrix product per pass,
    which on CPU and GPU is far faster than B separate thin products.
    Returns W (B, D, n_classes) with zero rows outside each mask, b (B, n_classes).
    """
    torch = _torch()
    N, D = X.shape
    B = masks.shape[0]
    M = masks.T.to(X.dtype).unsqueeze(-1)                         # (D, B, 1)
    W = torch.zeros(D, B, n_classes, device=X.device, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(B, n_classes, device=X.device, dtype=X.dtype, requires_grad=True)
    target = y.view(N, 1).expand(N, B).reshape(-1)
    reg = 0.5 / (C * N)

    def loss():
        Wm = W * M
        logits = (X @ Wm.reshape(D, B * n_classes)).view(N, B, n_classes) + b
        return torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), target,
                                                 reduction="sum") / N + reg * (Wm * Wm).sum()

    _minimize(loss, [W, b], max_iter, tol)
    return (W * M).detach().permute(1, 0, 2), b.detach()


def _tensor(X, device):
    """A float32 torch copy of X (memory-mapped cache arrays are read-only)."""
    return _torch().tensor(np.asarray(X, dtype=np.float32), device=device)


def _standardize(Ztr, Zte):
    mu = Ztr.mean(dim=1, keepdim=True)
    sd = Ztr.std(dim=1, keepdim=True).clamp_min(1e-6)
    return (Ztr - mu) / sd, (Zte - mu) / sd


def _width_groups(widths: np.ndarray, max_probes: int, spread: int = 8) -> list[np.ndarray]:
    """Probes sorted by width, cut into groups of at most ``max_probes`` whose widths stay
    within a factor ``spread`` — so narrow probes never pay for the full layer's width."""
    order = np.argsort(widths, kind="stable")
    groups, current = [], []
    for i in order:
        if current and (len(current) == max_probes or widths[i] > spread * widths[current[0]]):
            groups.append(np.array(current))
            current = []
        current.append(i)
    return groups + [np.array(current)] if current else groups


def probe_accuracy(X_train, y_train, X_test, y_test, *, columns=None, projections=None,
                   C: float = 1.0, max_iter: int = 500, standardize: bool = True,
                   device: str | None = None, max_batch_bytes: float = 2e9,
                   max_probes: int = 80) -> ProbeResult:
    """Test accuracy of probes on column subsets or projections of the same features.

    X_train: (N, D), X_test: (M, D); columns: list of B index arrays (subset widths may
    differ) — fitted together by :func:`fit_logreg_masked` in groups of similar width
    (``max_probes`` at most) on the union of the group's columns;
    projections: list of B (D, k_b) matrices — those of equal width fitted together by
    :func:`fit_logreg` in chunks of at most ``max_batch_bytes``; neither: one probe on all of X.
    """
    torch = _torch()
    from .extract import default_device
    device = device or default_device()
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    Xtr = _tensor(X_train, device)
    Xte = _tensor(X_test, device)
    ytr = torch.tensor(np.asarray(y_train, dtype=np.int64), device=device)
    yte = torch.tensor(np.asarray(y_test, dtype=np.int64), device=device)
    if columns is None and projections is None:
        columns = [np.arange(Xtr.shape[1])]
    if columns is not None:
        widths = np.array([len(c) for c in columns])
        groups = _width_groups(widths, max_probes)
    else:
        widths = np.array([np.shape(P)[1] for P in projections])
        groups = []
        for width in np.unique(widths):                     # same width: one batched problem
            members = np.flatnonzero(widths == width)
            chunk = max(1, int(max_batch_bytes // (4 * width * (len(Xtr) + len(Xte)))))
            groups += [members[i:i + chunk] for i in range(0, len(members), chunk)]
    if columns is not None and standardize:
        Xtr, Xte = (t[0] for t in _standardize(Xtr[None], Xte[None]))
    acc = np.zeros(len(widths))
    per_class = np.zeros((len(widths), n_classes))
    for idx in groups:
        if columns is not None:
            # only the union of the group's columns enters the shared matrix product
            union = np.unique(np.concatenate([np.asarray(columns[i]) for i in idx]))
            masks = torch.zeros(len(idx), len(union), dtype=torch.bool, device=device)
            for row, i in enumerate(idx):
                masks[row, torch.as_tensor(np.searchsorted(union, columns[i]), device=device)] = True
            cols = torch.as_tensor(union, device=device)
            W, b = fit_logreg_masked(Xtr[:, cols], ytr, masks, n_classes, C=C, max_iter=max_iter)
            logits = torch.einsum("md,bdc->bmc", Xte[:, cols], W) + b.unsqueeze(1)  # (B, M, C)
        else:
            P = torch.as_tensor(np.stack([np.asarray(projections[i], np.float32)
                                          for i in idx]), device=device)   # (B, D, k)
            Ztr, Zte = torch.matmul(Xtr, P), torch.matmul(Xte, P)
            if standardize:
                Ztr, Zte = _standardize(Ztr, Zte)
            W, b = fit_logreg(Ztr, ytr, n_classes, C=C, max_iter=max_iter)
            logits = torch.baddbmm(b.unsqueeze(1), Zte, W)
        hit = (logits.argmax(-1) == yte).float()                                # (B, M)
        acc[idx] = hit.mean(1).cpu().numpy()
        for c in range(n_classes):
            sel = yte == c
            per_class[idx, c] = hit[:, sel].mean(1).cpu().numpy() if sel.any() else np.nan
    return ProbeResult(acc, per_class, widths)


class LinearProbe:
    """scikit-learn-style single probe: ``LinearProbe(C=1).fit(X, y).score(X_test, y_test)``."""

    def __init__(self, C: float = 1.0, max_iter: int = 500, standardize: bool = True,
                 device: str | None = None):
        self.C, self.max_iter, self.standardize, self.device = C, max_iter, standardize, device

    def fit(self, X, y):
        torch = _torch()
        from .extract import default_device
        dev = self.device or default_device()
        X = _tensor(X, dev)
        self.classes_ = np.unique(y)
        yi = torch.as_tensor(np.searchsorted(self.classes_, y), device=dev)
        self.mean_ = X.mean(0) if self.standardize else torch.zeros(X.shape[1], device=dev)
        self.scale_ = X.std(0).clamp_min(1e-6) if self.standardize else torch.ones(X.shape[1], device=dev)
        W, b = fit_logreg(((X - self.mean_) / self.scale_)[None], yi, len(self.classes_),
                          C=self.C, max_iter=self.max_iter)
        self.coef_, self.intercept_ = W[0], b[0]
        return self

    def decision_function(self, X) -> np.ndarray:
        X = _tensor(X, self.coef_.device)
        return (((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]

    def score(self, X, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())
