"""The probe engine's batched L-BFGS (private: only :mod:`diffred.core.probe` imports it).

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

    def __init__(self, Z, low=None):
        self.Z, self.low = Z, low

    @property
    def data(self):
        return self.Z

    def __len__(self):
        return self.Z.shape[0]

    def select(self, rows):
        return OwnFeatures(self.Z[rows], None if self.low is None else self.low[rows])

    def lowered(self):
        """The same views with both big products in bfloat16 (a bf16 copy of Z)."""
        return OwnFeatures(self.Z, self.Z.bfloat16())

    def logits(self, W, exact: bool = False):
        """W (b, k, K) -> logits (b, K, N) (float32 product if ``exact``)."""
        if self.low is not None and not exact:
            return _torch().bmm(W.mT.bfloat16(), self.low.mT).float()
        return _torch().bmm(W.mT, self.Z.mT)

    def grad(self, G):
        """G (b, K, N) -> Zᵀ G (b, k, K)."""
        if self.low is not None:
            return _torch().bmm(G.bfloat16(), self.low).float().mT
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

    def __init__(self, X, masks, low=None):
        self.X, self.masks, self.low = X, masks, low

    @property
    def data(self):
        return self.X

    def __len__(self):
        return self.masks.shape[0]

    def select(self, rows):
        return SharedColumns(self.X, self.masks[rows], self.low)

    def lowered(self):
        """The same views with both big products in bfloat16 (one bf16 copy of X)."""
        return SharedColumns(self.X, self.masks, self.X.bfloat16())

    def logits(self, W, exact: bool = False):
        b, U, K = W.shape
        A = W.mT.reshape(b * K, U)
        if self.low is not None and not exact:
            return (A.bfloat16() @ self.low.T).float().view(b, K, -1)
        return (A @ self.X.T).view(b, K, -1)

    def grad(self, G):
        b, K, N = G.shape
        A = G.reshape(b * K, N)
        P = A @ self.X if self.low is None else (A.bfloat16() @ self.low).float()
        return P.view(b, K, -1).mT * self.masks.unsqueeze(2)

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
def _logits(views, L, x, K: int, exact: bool = False):
    """Logits (b, K, N) of the points x (b, k*K + K) (see :func:`_objective`)."""
    b = x.shape[0]
    V, c = x[:, :-K].view(b, -1, K), x[:, -K:]
    W = V if L is None else L.weights(V)
    return views.logits(W, exact) + c.unsqueeze(2)


def _objective(views, L, y, y_onehot, x, reg: float, logits=None):
    """Loss (b,) float64, gradient wrt x (b, n), and largest |gradient| wrt (W, b) (b,).

    x (b, k*K + K) holds each probe's whitened weights V (k, K), W = L⁻ᵀ V, and its
    intercept (K,); y (N,) the labels, y_onehot (K, N) the same one-hot; ``logits``: those
    of x if known (else computed)."""
    torch = _torch()
    K, N = y_onehot.shape
    b = x.shape[0]
    V, c = x[:, :-K].view(b, -1, K), x[:, -K:]
    W = V if L is None else L.weights(V)
    if logits is None:
        logits = views.logits(W) + c.unsqueeze(2)
    logp = torch.log_softmax(logits, dim=1)                                       # (b, K, N)
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


REFRESH = 10     # iterations between float32 recomputations of the bf16 phase's logits


def lbfgs(views, y, n_classes: int, C: float, max_iter: int, tol: float,
          precondition: bool, history: int = 10, precision: str = "fp32"):
    """Minimise every probe's objective; returns W (B, k, K), b (B, K), iterations (B,).

    views: :class:`OwnFeatures` or :class:`SharedColumns` (standardised features); y: (N,)
    int64 labels; ``precondition``: solve in whitened coordinates (:func:`whitening`).
    ``precision``: ``"fp32"``, or ``"bf16"``: mixed precision — first L-BFGS on the views'
    bfloat16 products (logits and gradient; softmax, line search, history and whitening stay
    float32) down to ``tol`` or until the rounding stalls it (its gradient noise is ~ 1e-5
    on 10k standardised rows), then float32 from that point with its curvature history, so
    the stopping test is always evaluated in float32 (measured on 25 CIFAR-10 subset probes
    of 128-1024 neurons: a bf16 phase to 1e-4 leaves the float32 phase ~ as much work as
    fp32 alone; to ``tol`` it leaves a few iterations).  ``max_iter`` bounds both phases
    together.

    The state of the probes still running is kept compact: a probe that converges hands
    its solution to the output and leaves every later product."""
    torch = _torch()
    X = views.data
    N = len(y)
    reg = 1.0 / (C * N)
    Y1 = torch.nn.functional.one_hot(y, n_classes).to(X.dtype).T.contiguous()
    L = whitening(views, n_classes, C, N) if precondition else None
    state = None
    if precision == "bf16":
        state = _minimise(views.lowered(), L, y, Y1, reg, max_iter, tol, history,
                          keep_history=True)
    x, n_iter = _minimise(views, L, y, Y1, reg, max_iter, tol, history, state)[:2]
    V = x[:, :-n_classes].view(len(x), -1, n_classes)
    W = V if L is None else L.weights(V)
    return W, x[:, -n_classes:], n_iter


def _minimise(views, L, y, Y1, reg: float, max_iter: int, tol: float, history: int,
              start=None, keep_history: bool = False):
    """The L-BFGS iterations: returns every probe's final x (B, n) and iterations (B,), and
    with ``keep_history`` its curvature history S, Y (B, m, n), rho (B, m) in time order
    (newest last) and gamma (B,).  ``start``: such a state to continue from (iterations
    count on; a probe already at ``max_iter`` does not move)."""
    torch = _torch()
    X = views.data
    B = len(views)
    dev, dt = X.device, X.dtype
    n_classes = Y1.shape[0]
    n = X.shape[-1] * n_classes + n_classes
    if start is None:
        x = torch.zeros(B, n, device=dev, dtype=dt)
        n_iter = torch.zeros(B, dtype=torch.long, device=dev)
        S = torch.zeros(B, history, n, device=dev, dtype=dt)
        Yh = torch.zeros_like(S)
        rho = torch.zeros(B, history, device=dev, dtype=dt)
        gamma = torch.ones(B, device=dev, dtype=dt)
    else:
        x, n_iter, S, Yh, rho, gamma = (t.clone() for t in start)
    out = [x.clone(), n_iter] + ([S.clone(), Yh.clone(), rho.clone(), gamma.clone()]
                                 if keep_history else [])
    ids = torch.arange(B, device=dev)                 # the running probes, in state order
    # low precision: the logits are carried in float32 and moved by t * logits(d), so the
    # rounding of the bf16 product is relative to the step's, not the point's, logits;
    # recomputed in float32 every REFRESH iterations
    lam = _logits(views, L, x, n_classes, exact=True) if views.low is not None else None
    f, g, worst = _objective(views, L, y, Y1, x, reg, lam)
    done = (worst <= tol) | (n_iter >= max_iter)
    for it in range(max_iter + 1):
        if done.any():                                # hand over and drop converged probes
            # history slots in time order, newest last (the ring's newest is (it - 1) % m)
            order = [(it + j) % history for j in range(history)]
            out[0][ids[done]] = x[done]
            if keep_history:
                for o, t in zip(out[2:5], (S, Yh, rho)):
                    o[ids[done]] = t[done][:, order]
                out[5][ids[done]] = gamma[done]
            keep = _nonzero(~done)
            if len(keep) == 0:
                break
            ids, x, f, g, S, Yh, rho, gamma = (t[keep] for t in (ids, x, f, g, S, Yh, rho, gamma))
            views, L = views.select(keep), None if L is None else L.select(keep)
            lam = None if lam is None else lam[keep]
        if it == max_iter:
            out[0][ids] = x
            break
        n_iter[ids] += 1
        d = _two_loop(g, S, Yh, rho, gamma, (it - 1) % history)
        if it == 0 and start is None:               # no history yet: a cautious first step
            t = (1 / g.abs().sum(1)).clamp(max=1)
        else:
            t = torch.ones_like(gamma)
        slope = (g * d).sum(1).double()
        lam_d = None if lam is None else _logits(views, L, d, n_classes)

        def moved(rows):                              # the logits at x + t d, rows (b,)
            return None if lam is None else lam[rows] + t[rows].view(-1, 1, 1) * lam_d[rows]
        every = slice(None)
        f_new, g_new, worst_new = _objective(views, L, y, Y1, x + t.unsqueeze(1) * d, reg,
                                             moved(every))
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
                x[bad] + t[bad].unsqueeze(1) * d[bad], reg, moved(bad))
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
        if lam is not None:
            lam[ok] = moved(ok)
        x[ok], f[ok], g[ok] = x[ok] + s[ok], f_new[ok], g_new[ok]
        if lam is not None and it % REFRESH == REFRESH - 1:
            lam = _logits(views, L, x, n_classes, exact=True)
            f, g, worst_new = _objective(views, L, y, Y1, x, reg, lam)
        done = ~ok | (worst_new <= tol) | stalled | (n_iter[ids] >= max_iter)
    return out


def whitening_pays(width: int, n: int, n_classes: int) -> bool:
    """For subsets of neurons: whitening costs ~ 5 k³ per probe and saves roughly half of
    the ~ 4 N k K-flop passes; measured on 2 cores it pays unless k² > 24 N K (wide, few
    samples: 1,280 neurons need ≥ 7k samples for 10 classes)."""
    return width <= 4096 and width ** 2 <= 24 * n * n_classes
