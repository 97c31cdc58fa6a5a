"""The probe engine's batched L-BFGS (private: only :mod:`diffred.probe` imports it).

Minimises B multinomial L2 logistic-regression objectives at once, each scikit-learn's
``LogisticRegression(C)`` objective divided by ``C * N``: ``mean_i CE(x_i W + b, y_i) +
||W||^2 / (2 C N)`` (intercept not penalised).  Every probe keeps its own curvature history,
step length and stopping test (scikit-learn's form: largest gradient entry <= ``tol``), so a
probe that has converged stops costing anything while the others go on.  Where it pays, each
probe is solved in whitened coordinates ``W = L⁻ᵀ V`` with ``L Lᵀ`` the Cholesky factor of its
(regularised) feature covariance, which removes the correlation between features that
otherwise makes L-BFGS crawl; the objective and its optimum are unchanged.

The data term is served by a *views* object: :class:`OwnFeatures` (B probes, each on its own
features) or :class:`SharedColumns` (B column subsets of one matrix).
"""
from __future__ import annotations

import numpy as np


def _torch():
    import torch
    return torch


# ============================================================================ feature views
# A "views" object serves the data term of B probes.  Weights are W (b, k, K); logits and
# their gradient G are kept class-major, (b, K, N), so both big products are plain GEMMs.
class OwnFeatures:
    """B probes, each on its own features Z (B, N, k)."""

    def __init__(self, Z):
        self.Z = Z

    @property
    def data(self):
        return self.Z

    def __len__(self):
        return self.Z.shape[0]

    def select(self, rows):
        return OwnFeatures(self.Z[rows])

    def logits(self, W):
        """W (b, k, K) -> logits (b, K, N)."""
        return _torch().bmm(W.mT, self.Z.mT)

    def grad(self, G):
        """G (b, K, N) -> Zᵀ G (b, k, K)."""
        return _torch().bmm(G, self.Z).mT

    def covariance(self):
        """Coordinates (None: all k) and (b, k, k) second moments of the (standardised)
        features, estimated on max(4k, 2048) seeded random rows (each probe pays for its own)."""
        torch = _torch()
        N, k = self.Z.shape[1:]
        rows = torch.randperm(N, generator=torch.Generator().manual_seed(0))[:max(4 * k, 2048)]
        Zs = self.Z[:, rows.to(self.Z.device)]
        return None, list(torch.bmm(Zs.mT, Zs) / len(rows))


class SharedColumns:
    """B probes on column subsets of one matrix: X (N, U), masks (B, U) bool.

    Probe b's weights live in all U rows but are zero outside its mask, so every probe is
    served by one (B*K, U) x (U, N) product — far faster than B thin products."""

    def __init__(self, X, masks):
        self.X, self.masks = X, masks

    @property
    def data(self):
        return self.X

    def __len__(self):
        return self.masks.shape[0]

    def select(self, rows):
        return SharedColumns(self.X, self.masks[rows])

    def logits(self, W):
        b, U, K = W.shape
        return (W.mT.reshape(b * K, U) @ self.X.T).view(b, K, -1)

    def grad(self, G):
        b, K, N = G.shape
        return (G.reshape(b * K, N) @ self.X).view(b, K, -1).mT * self.masks.unsqueeze(2)

    def covariance(self):
        """Each probe's columns (k_b,) and (k_b, k_b) covariance block, as lists — all
        rows, as one (U, U) product serves every probe."""
        S = self.X.T @ self.X / len(self.X)
        cols = [_nonzero(m) for m in self.masks]
        return cols, [S[c][:, c] for c in cols]


def _nonzero(mask):
    """Indices (n,) of the True entries of a 1-d bool tensor."""
    return _torch().nonzero(mask).squeeze(1)


class Whitening:
    """Per-probe Cholesky factors L_b (k_b, k_b), applied on each probe's own coordinates:
    weights W = L⁻ᵀ V, gradients ∂/∂V = L⁻¹ ∂/∂W.  Probes of equal width are batched:
    ``groups`` holds (probe positions (g,), coordinates (g, k) or None for all, L (g, k, k))."""

    def __init__(self, groups):
        self.groups = groups

    def select(self, rows):
        """The factors of probes ``rows`` (positions), in that order."""
        torch = _torch()
        where = torch.full((1 + max(int(p.max()) for p, _, _ in self.groups),), -1,
                           dtype=torch.long, device=rows.device)
        where[rows] = torch.arange(len(rows), device=rows.device)
        groups = []
        for probes, coords, L in self.groups:
            keep = _nonzero(where[probes] >= 0)
            if len(keep):
                groups.append((where[probes[keep]], None if coords is None else coords[keep],
                               L[keep]))
        return Whitening(groups)

    def _apply(self, A, upper: bool):
        out = _torch().zeros_like(A)
        for probes, coords, L in self.groups:
            index = (probes,) if coords is None else (probes.unsqueeze(1), coords)
            out[index] = _torch().linalg.solve_triangular(L.mT if upper else L, A[index],
                                                          upper=upper)
        return out

    def weights(self, V):
        """V (b, k, K) -> W = L⁻ᵀ V (zero outside each probe's coordinates)."""
        return self._apply(V, upper=True)

    def gradient(self, gW):
        """∂/∂W (b, k, K) -> ∂/∂V = L⁻¹ ∂/∂W."""
        return self._apply(gW, upper=False)


def whitening(views, n_classes: int, C: float, n: int) -> Whitening:
    """Per-probe Cholesky factor L of Σ + λI (Σ: the feature covariance, λ = K / (C N):
    the regulariser's share of the Hessian at W = 0).  Solving in V = Lᵀ W makes the
    Hessian close to a multiple of the identity."""
    torch = _torch()
    X = views.data
    coords, blocks = views.covariance()
    factors = []
    for S in blocks:
        ridge = n_classes / (C * n)
        while True:          # near-singular in float32 (duplicate columns, huge C): more ridge
            factor, info = torch.linalg.cholesky_ex(S + ridge * torch.eye(len(S), device=S.device))
            if int(info) == 0:
                break
            ridge = max(10 * ridge, 1e-6 * float(S.diagonal().mean()))
        factors.append(factor)
    widths = np.array([len(f) for f in factors])
    groups = []
    for width in np.unique(widths):
        members = np.flatnonzero(widths == width)
        groups.append((torch.as_tensor(members, device=X.device),
                       None if coords is None else torch.stack([coords[i] for i in members]),
                       torch.stack([factors[i] for i in members])))
    return Whitening(groups)


# ============================================================================ solver
def _objective(views, L, y, y_onehot, x, reg: float):
    """Loss (b,) float64, gradient wrt x (b, n), and largest |gradient| wrt (W, b) (b,).

    x (b, k*K + K) holds each probe's whitened weights V (k, K), W = L⁻ᵀ V, and its
    intercept (K,); y (N,) the labels, y_onehot (K, N) the same one-hot."""
    torch = _torch()
    K, N = y_onehot.shape
    b = x.shape[0]
    V, c = x[:, :-K].view(b, -1, K), x[:, -K:]
    W = V if L is None else L.weights(V)
    logp = torch.log_softmax(views.logits(W) + c.unsqueeze(2), dim=1)          # (b, K, N)
    f = (-logp.gather(1, y.expand(b, 1, N)).sum((1, 2), dtype=torch.float64) / N
         + 0.5 * reg * (W * W).sum((1, 2)).double())
    G = logp.exp_().sub_(y_onehot)                                               # N ∂f/∂logits
    gW = views.grad(G) / N + reg * W
    gc = G.sum(2) / N
    gV = gW if L is None else L.gradient(gW)
    worst = torch.maximum(gW.abs().amax((1, 2)), gc.abs().amax(1))
    return f, torch.cat([gV.reshape(b, -1), gc], 1), worst


def _two_loop(g, S, Y, rho, gamma, newest: int):
    """L-BFGS direction -H g for b probes at once; S, Y (b, m, n), rho (b, m) (0 = empty)."""
    m = S.shape[1]
    order = [(newest - j) % m for j in range(m)]
    q, alpha = g.clone(), {}
    for i in order:
        alpha[i] = rho[:, i] * (S[:, i] * q).sum(1)
        q -= alpha[i].unsqueeze(1) * Y[:, i]
    r = gamma.unsqueeze(1) * q
    for i in reversed(order):
        beta = rho[:, i] * (Y[:, i] * r).sum(1)
        r += (alpha[i] - beta).unsqueeze(1) * S[:, i]
    return -r


def lbfgs(views, y, n_classes: int, C: float, max_iter: int, tol: float,
          precondition: bool, history: int = 10):
    """Minimise every probe's objective; returns W (B, k, K), b (B, K), iterations (B,).

    views: :class:`OwnFeatures` or :class:`SharedColumns` (standardised features); y: (N,)
    int64 labels; ``precondition``: solve in whitened coordinates (:func:`whitening`).

    The state of the probes still running is kept compact: a probe that converges hands
    its solution to the output and leaves every later product."""
    torch = _torch()
    X = views.data
    N, B = len(y), len(views)
    dev, dt = X.device, X.dtype
    reg = 1.0 / (C * N)
    Y1 = torch.nn.functional.one_hot(y, n_classes).to(dt).T.contiguous()
    L = L_all = whitening(views, n_classes, C, N) if precondition else None
    n = X.shape[-1] * n_classes + n_classes
    solution = torch.zeros(B, n, device=dev, dtype=dt)
    n_iter = torch.zeros(B, dtype=torch.long, device=dev)
    ids = torch.arange(B, device=dev)                 # the running probes, in state order
    x = torch.zeros(B, n, device=dev, dtype=dt)
    f, g, worst = _objective(views, L, y, Y1, x, reg)
    S = torch.zeros(B, history, n, device=dev, dtype=dt)
    Yh = torch.zeros_like(S)
    rho = torch.zeros(B, history, device=dev, dtype=dt)
    gamma = torch.ones(B, device=dev, dtype=dt)
    done = worst <= tol
    for it in range(max_iter + 1):
        if done.any():                                # hand over and drop converged probes
            solution[ids[done]] = x[done]
            keep = _nonzero(~done)
            if len(keep) == 0:
                break
            ids, x, f, g, S, Yh, rho, gamma = (t[keep] for t in (ids, x, f, g, S, Yh, rho, gamma))
            views, L = views.select(keep), None if L is None else L.select(keep)
        if it == max_iter:
            solution[ids] = x
            break
        n_iter[ids] += 1
        d = _two_loop(g, S, Yh, rho, gamma, (it - 1) % history)
        t = (1 / g.abs().sum(1)).clamp(max=1) if it == 0 else torch.ones_like(gamma)
        slope = (g * d).sum(1).double()
        f_new, g_new, worst_new = _objective(views, L, y, Y1, x + t.unsqueeze(1) * d, reg)
        for _ in range(25):                           # backtracking (Armijo)
            bad = _nonzero(f_new > f + 1e-4 * t.double() * slope)
            if len(bad) == 0:
                break
            # safeguarded quadratic interpolation of the step
            tb = t[bad].double()
            tq = -slope[bad] * tb ** 2 / (2 * (f_new[bad] - f[bad] - tb * slope[bad]))
            t[bad] = torch.minimum(torch.maximum(tq.to(dt), 0.1 * t[bad]), 0.5 * t[bad])
            f_new[bad], g_new[bad], worst_new[bad] = _objective(
                views.select(bad), None if L is None else L.select(bad), y, Y1,
                x[bad] + t[bad].unsqueeze(1) * d[bad], reg)
        ok = f_new <= f + 1e-4 * t.double() * slope   # else: no descent left in float precision
        s = t.unsqueeze(1) * d
        yv = g_new - g
        sy, yy = (s * yv).sum(1), (yv * yv).sum(1)
        push = ok & (sy > 1e-10 * yy)
        slot = it % history
        S[push, slot], Yh[push, slot] = s[push], yv[push]
        rho[:, slot] = torch.where(push, 1 / sy.clamp_min(1e-30), torch.zeros_like(sy))
        gamma[push] = (sy / yy)[push]
        stalled = (f - f_new).abs() <= 1e-12 * f_new.abs().clamp_min(1)
        x[ok], f[ok], g[ok] = x[ok] + s[ok], f_new[ok], g_new[ok]
        done = ~ok | (worst_new <= tol) | stalled
    V = solution[:, :-n_classes].view(B, -1, n_classes)
    W = V if L_all is None else L_all.weights(V)
    return W, solution[:, -n_classes:], n_iter


def whitening_pays(width: int, n: int, n_classes: int) -> bool:
    """For subsets of neurons: whitening costs ~ 5 k³ per probe and saves roughly half of
    the ~ 4 N k K-flop passes; measured on 2 cores it pays unless k² > 24 N K (wide, few
    samples: 1,280 neurons need ≥ 7k samples for 10 classes)."""
    return width <= 4096 and width ** 2 <= 24 * n * n_classes
