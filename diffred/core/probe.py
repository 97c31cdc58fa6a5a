"""The probe engine: every linear probe of the book, batched over many feature views.

Logistic regression.  One call fits B independent multinomial L2 logistic regressions — on B
column subsets or B projections of the same features, or on B few-shot episodes — as a single
torch problem (CPU or GPU).  The objective is scikit-learn's ``LogisticRegression(C)`` one,
divided by ``C * N``: ``mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C N)`` (intercept not
penalised); a probe stops when its largest gradient entry (weights and intercept) is
``<= tol``.  Two solvers (:func:`fit_logreg`'s ``solver``):

* ``"lbfgs"`` — batched L-BFGS with per-probe curvature history, line search and stopping,
  optionally in whitened coordinates (:mod:`diffred.core._lbfgs`).  Probes on standardised
  features: :func:`probe_accuracy`, :class:`LinearProbe`.
* ``"nesterov"`` — Nesterov's accelerated gradient with the step 1/L from a per-probe
  curvature bound, no line search: one batched product per step, for many tiny problems
  (few-shot episodes, :func:`diffred.studies.fewshot.method.episode_accuracy`).

Precision (``precision=``, L-BFGS only).  ``"bf16"``: mixed precision — the two big products
(logits and gradient) in bfloat16, with the logits carried in float32 from step to step, then
float32 iterations from that point, so the stopping test is always float32; ``"fp32"``:
float32 throughout; ``"auto"`` (default): bf16 where the device has fast bfloat16 products
(AVX512-BF16 / AMX CPUs, CUDA) and the product is >= :data:`BF16_MIN_WIDTH` features wide,
else fp32; ``None`` (every default): :func:`diffred.core.precision.setting`, a chapter's
``precision`` parameter.  Not applied to the Nesterov and elastic-net
solvers, where bf16 measured slower (casts and small-GEMM overhead) on the development CPU.

Elastic net.  :func:`fit_elastic_net` — Dalvi et al.'s L1 + L2-norm penalised softmax probe,
solved to a tolerance, whose weights rank neurons (:func:`diffred.studies.neurons.method.rank_neurons`).

Standardisation.  :func:`standardization` is the one definition: training mean and std of
each feature (std floored at 1e-6), applied as ``(X - mean) / scale`` to every split.
Compare :func:`probe_accuracy` with ``make_pipeline(StandardScaler(), LogisticRegression(C))``.

Tolerance (:data:`TOL`).  With C = 1 and N = 10k the problem is weakly regularised, so a
gradient test leaves the weights loose along flat directions, and where a run stops there
depends on the path.  Measured on 20 random-subset probes of efficientnet_lite0 CIFAR-10
features (128–1024 neurons, N = 10,000, 1,000 test images), test accuracy vs the converged
optimum (tol 1e-6, where this solver and scikit-learn agree: mean 0.02, max 0.2 points):
scikit-learn at its default 1e-4 is off by mean 0.21 / max 0.7 points; L-BFGS here at 1e-4
by 0.20 / 1.2, at 3e-5 by 0.09 / 0.3 — so the default here is 3e-5.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from diffred.core._lbfgs import OwnFeatures, SharedColumns, lbfgs, whitening_pays
from diffred.core.device import default_device
from diffred.core.errors import check_choice
from diffred.core.precision import bf16_products, chosen

TOL = 3e-5     # default gradient tolerance of the L-BFGS probes (see the module docstring)
SOLVERS = ("lbfgs", "nesterov")
#: the probe engine's code (this module and :mod:`diffred.core._lbfgs`): every cached probe result
#: passes it to :func:`diffred.core.cache.code_version`, so a solver change never serves stale results


@dataclass
class ProbeResult:
    """Scores of B probes (what :func:`probe_accuracy` returns).

    Attributes
    ----------
    accuracy : ndarray of shape (B,), float64
        Test accuracy of each probe.
    per_class : ndarray of shape (B, n_classes), float64
        Test recall of each probe per class (NaN for a class absent from the test set).
    k : ndarray of shape (B,), int
        Probe widths (number of columns, or projection width).
    eval_accuracy : dict of str to ndarray of shape (B,)
        Accuracy on each extra evaluation set of :func:`probe_accuracy`'s ``eval_sets``, by name.
    correct : ndarray of shape (B, M), bool, or None
        Whether each probe got each test image right (for paired resampling of the test set).
    converged : ndarray of shape (B,), bool, or None
        Whether each probe stopped before ``max_iter`` (its gradient test met, or no further
        decrease possible); False: it stopped at the iteration cap.
    """
    accuracy: np.ndarray
    per_class: np.ndarray
    k: np.ndarray
    eval_accuracy: dict = field(default_factory=dict)
    correct: np.ndarray | None = None
    converged: np.ndarray | None = None


def _torch():
    import torch
    return torch


def standardization(X, dim: int = 0):
    """The training statistics every probe standardises with: ``(mean, scale)`` of tensor X
    along ``dim`` (kept as a size-1 axis), scale = std floored at 1e-6 (a constant feature
    maps to 0).  Every split is standardised as ``(X - mean) / scale``."""
    return X.mean(dim, keepdim=True), X.std(dim, keepdim=True).clamp_min(1e-6)


#: "auto" uses bf16 products from this many features per row up: narrower products gained
#: nothing measured on the development CPU (small inner dimension, casts)
BF16_MIN_WIDTH = 512


def _precision(precision: str | None, device, width: int = BF16_MIN_WIDTH) -> str:
    """``"fp32"`` or ``"bf16"`` for the L-BFGS solver: ``"auto"`` is bf16 where supported and
    the products are ``width`` >= :data:`BF16_MIN_WIDTH` features wide; None: the setting
    (:func:`diffred.core.precision.setting`)."""
    precision = chosen(precision)
    if precision == "auto":
        return "bf16" if width >= BF16_MIN_WIDTH and bf16_products(device) else "fp32"
    return precision


def _check_settings(C, max_iter, tol) -> None:
    """ValueError naming the first bad solver setting: C > 0, max_iter >= 1, tol > 0."""
    for name, value, ok, want in (
            ("C", C, isinstance(C, numbers.Real) and C > 0, "a positive number"),
            ("max_iter", max_iter, isinstance(max_iter, numbers.Integral) and max_iter >= 1,
             "an integer >= 1"),
            ("tol", tol, isinstance(tol, numbers.Real) and tol > 0, "a positive number")):
        if not ok:
            raise ValueError(f"{name} must be {want}, got {value!r}")


# ============================================================================ logistic regression
def fit_logreg(Z, y, n_classes: int, C: float = 1.0, max_iter: int = 500, tol: float = TOL,
               solver: str = "lbfgs", precondition: bool | None = None,
               precision: str | None = None, return_iterations: bool = False):
    """Fit B multinomial logistic regressions, each on its own features, jointly.

    Z: (B, N, k) float tensor; y: (N,) int64 tensor (labels shared by all probes).  Objective
    and stopping test: see the module docstring.  ``solver``: ``"lbfgs"`` (for standardised
    features) or ``"nesterov"`` (many small problems, e.g. few-shot episodes reduced to
    their span; it tests the gradient every 20 steps).  ``precondition`` (L-BFGS only;
    default k <= 4096) solves in whitened coordinates — projections mix every neuron, so
    their coordinates are strongly correlated (random-projection probes converge ~ 4x
    faster whitened).  ``precision`` (L-BFGS only): ``"fp32"``, ``"bf16"`` (mixed: the two
    big products in bfloat16, then float32 to ``tol``, see :func:`diffred.core._lbfgs.lbfgs`) or
    ``"auto"`` (bf16 where the device has fast bfloat16 products and k >= 512, else fp32);
    None: :func:`diffred.core.precision.setting`.
    Returns W (B, k, n_classes), b (B, n_classes), and with ``return_iterations`` (L-BFGS
    only) the iterations each probe ran (B,): ``max_iter`` means it stopped at the cap."""
    check_choice("solver", solver, SOLVERS)
    precision = _precision(precision, Z.device, Z.shape[2])
    if solver == "nesterov":
        if return_iterations:
            raise ValueError("return_iterations needs solver='lbfgs' (nesterov tests its "
                             "gradient every 20 steps only)")
        return _nesterov(Z, y, n_classes, C, max_iter, tol)
    if precondition is None:
        precondition = Z.shape[2] <= 4096
    out = lbfgs(OwnFeatures(Z), y, n_classes, C, max_iter, tol, precondition,
                precision=precision)
    return out if return_iterations else out[:2]


def fit_logreg_masked(X, y, masks, n_classes: int, C: float = 1.0, max_iter: int = 500,
                      tol: float = TOL, precondition: bool | None = None,
                      precision: str | None = None, return_iterations: bool = False):
    """Fit B multinomial logistic regressions on B column subsets of the same X jointly (L-BFGS).

    X: (N, U) float tensor (standardised); y: (N,) int64; masks: (B, U) bool — probe b sees
    the columns where ``masks[b]`` is True.  Probe b's weights live in all U rows but are zero
    outside its mask, so all probes are served by one (B*K, U) x (U, N) product.
    ``precondition`` defaults to :func:`diffred.core._lbfgs.whitening_pays`; ``precision``: as in
    :func:`fit_logreg`.
    Returns W (B, U, n_classes) with zero rows outside each mask, b (B, n_classes), and with
    ``return_iterations`` the iterations each probe ran (B,)."""
    precision = _precision(precision, X.device, X.shape[1])
    if precondition is None:
        precondition = whitening_pays(X.shape[1], X.shape[0], n_classes)
    out = lbfgs(SharedColumns(X, masks), y, n_classes, C, max_iter, tol, precondition,
                precision=precision)
    return out if return_iterations else out[:2]


def _top_eigenvalue(Z, n_iter: int = 30):
    """Largest eigenvalue of each Z_e^T Z_e, Z: (E, M, r) -> (E,), by power iteration.

    Over-estimated (x1.25, and never below the Rayleigh quotient reached), so that
    1/L stays a safe gradient step."""
    torch = _torch()
    v = torch.ones(Z.shape[0], Z.shape[2], 1, device=Z.device, dtype=Z.dtype)
    for _ in range(n_iter):
        v = Z.transpose(1, 2) @ (Z @ v)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    rayleigh = (Z @ v).square().sum((1, 2))
    return 1.25 * rayleigh


def _nesterov(Z, y, n_classes: int, C: float, max_iter: int, tol: float):
    """:func:`fit_logreg` by Nesterov's accelerated gradient, Z (E, M, r) -> W, b.

    Step 1/L from a per-problem bound on the curvature (softmax curvature <= 1/2 times the
    Gram matrix's top eigenvalue, by power iteration), momentum from L / (1 / (C M)); a
    problem leaves the batch once its largest gradient entry is <= ``tol`` (tested every
    20 steps and at the last)."""
    torch = _torch()
    E, M, r = Z.shape
    Z1 = torch.cat([Z, torch.ones(E, M, 1, device=Z.device, dtype=Z.dtype)], 2)   # (E, M, r+1)
    Y = torch.nn.functional.one_hot(y, n_classes).to(Z.dtype)                     # (M, C)
    lam = 1.0 / (C * M)
    penalised = torch.ones(r + 1, 1, device=Z.device, dtype=Z.dtype)
    penalised[-1] = 0
    L = 0.5 * _top_eigenvalue(Z1) / M + lam                                      # (E,)
    kappa = L / lam
    momentum = ((kappa.sqrt() - 1) / (kappa.sqrt() + 1)).view(E, 1, 1)
    step = (1 / L).view(E, 1, 1)
    out = torch.zeros(E, r + 1, n_classes, device=Z.device, dtype=Z.dtype)
    active = torch.arange(E, device=Z.device)        # problems still iterating
    W = out.clone()
    V = W.clone()
    Z1t = Z1.transpose(1, 2).contiguous()
    for it in range(max_iter):
        grad = Z1t @ (torch.softmax(Z1 @ V, -1) - Y) / M + lam * penalised * V
        W_next = V - step * grad
        V = W_next + momentum * (W_next - W)
        W = W_next
        if it % 20 == 19 or it == max_iter - 1:
            g = Z1t @ (torch.softmax(Z1 @ W, -1) - Y) / M + lam * penalised * W
            done = g.abs().amax((1, 2)) <= tol
            out[active] = W
            if done.all():
                break
            if done.any():                           # drop converged problems from the batch
                keep = ~done
                active, Z1, Z1t, W, V = active[keep], Z1[keep], Z1t[keep], W[keep], V[keep]
                step, momentum = step[keep], momentum[keep]
    return out[:, :r], out[:, r]


# ============================================================================ elastic net
def fit_elastic_net(X, y, n_classes: int | None = None, *, l1: float = 1e-5, l2: float = 1e-5,
                    max_iter: int = 2000, tol: float = 1e-4, standardize: bool = False,
                    device: str | None = None):
    """Dalvi et al.'s elastic-net softmax probe (the ranking probe), solved to a tolerance.

    The official objective (NeuroX ``linear_probe.py``; the authors' ``aux_classifier``):
    ``F(W, b) = mean_i CE(x_i W + b, y_i) + l1 * sum|W| + l2 * ||W||_2`` with ``||W||_2`` the
    Frobenius *norm* (not its square) and the bias not penalised; the features are the raw
    activations (``standardize=True`` standardises them first).  The authors minimise it with
    10 epochs of minibatch Adam; here it is solved by accelerated proximal gradient (FISTA with
    adaptive restart, step 1/L from a bound on the curvature) on the full training set, whose
    proximal step is exact: soft-threshold by ``t*l1``, then shrink the whole matrix by
    ``max(0, 1 - t*l2/||V||)``.  Features are centred first (the intercept absorbs the shift,
    so the optimal W is unchanged).  It stops when the largest entry of the gradient mapping
    ``(Θ - prox(Θ - t∇))/t`` (weights and bias) is ``<= tol`` or after ``max_iter`` steps.
    X: (N, D) array; y: (N,) int labels; n_classes: default max(y) + 1.
    Returns W (D, n_classes), b (n_classes,) float32 ndarrays for the raw features
    (logits = X W + b; with ``standardize`` the penalty applies to the standardised weights)
    and ``info``: objective, iterations, largest gradient-mapping entry, converged.
    """
    torch = _torch()
    device = device or default_device()
    Xt = torch.tensor(np.asarray(X, np.float32), device=device)
    mean = Xt.mean(0, keepdim=True)
    Xt -= mean
    scale = Xt.std(0, keepdim=True).clamp_min(1e-6) if standardize else None
    if standardize:
        Xt /= scale
    yt = torch.tensor(np.asarray(y, np.int64), device=device)
    N, D = Xt.shape
    n_classes = n_classes or int(yt.max()) + 1
    Y = torch.nn.functional.one_hot(yt, n_classes).to(Xt.dtype)
    # softmax CE curvature <= 1/2 * λmax([X 1]ᵀ[X 1]) / N; X is centred, so the ones column
    # adds the eigenvalue N apart
    top = float(_top_eigenvalue(Xt.unsqueeze(0))[0])
    step = 1.0 / (0.5 * max(top, N) / N)

    def smooth(W, b):
        logits = Xt @ W + b
        loss = torch.nn.functional.cross_entropy(logits, yt)
        G = (torch.softmax(logits, 1) - Y) / N
        return loss, Xt.T @ G, G.sum(0)

    def prox(V, t):
        V = torch.sign(V) * (V.abs() - t * l1).clamp_min(0)
        norm = V.norm()
        return V * (1 - t * l2 / norm).clamp_min(0) if norm > 0 else V

    def objective(W, b):
        return float(smooth(W, b)[0]) + l1 * float(W.abs().sum()) + l2 * float(W.norm())

    W = torch.zeros(D, n_classes, device=device, dtype=Xt.dtype)
    b = torch.zeros(n_classes, device=device, dtype=Xt.dtype)
    VW, Vb, momentum, last = W.clone(), b.clone(), 1.0, np.inf
    gmap, it = np.inf, 0
    with torch.no_grad():
        for it in range(1, max_iter + 1):
            _, gW, gb = smooth(VW, Vb)
            W_next, b_next = prox(VW - step * gW, step), Vb - step * gb
            # gradient mapping at the extrapolated point: the first-order optimality residual
            gmap = max(float(((VW - W_next) / step).abs().max()), float(gb.abs().max()))
            if gmap <= tol:
                W, b = W_next, b_next
                break
            current = objective(W_next, b_next) if it % 10 == 0 else None
            if current is not None and current > last:           # adaptive restart
                momentum, VW, Vb = 1.0, W.clone(), b.clone()
                last = objective(W, b)
                continue
            if current is not None:
                last = current
            m_next = (1 + (1 + 4 * momentum ** 2) ** 0.5) / 2
            beta = (momentum - 1) / m_next
            VW = W_next + beta * (W_next - W)
            Vb = b_next + beta * (b_next - b)
            W, b, momentum = W_next, b_next, m_next
    info = {"objective": objective(W, b), "iterations": it, "gradient_mapping": gmap,
            "converged": bool(gmap <= tol)}
    if standardize:                         # back to the raw features: logits = X W + b
        mean, W = mean / scale, W / scale.T
    return W.cpu().numpy(), (b - mean @ W)[0].cpu().numpy(), info


# ============================================================================ probe accuracy
def _tensor(X, device):
    """A float32 torch copy of X (memory-mapped cache arrays are read-only)."""
    return _torch().tensor(np.asarray(X, dtype=np.float32), device=device)


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
                   eval_sets: dict | None = None, C: float = 1.0, max_iter: int = 500,
                   tol: float = TOL, standardize: bool = True,
                   precondition: bool | None = None, precision: str | None = None,
                   device: str | None = None, max_batch_bytes: float = 2e9,
                   max_probes: int = 80) -> ProbeResult:
    """Test accuracy of B linear probes on column subsets or projections of the same features.

    Each probe is a multinomial L2 logistic regression (objective and stopping test: see the
    module docstring).  Every set is standardised with the training statistics (of X for
    ``columns``, of each projection's output for ``projections``).

    Parameters
    ----------
    X_train : array-like of shape (N, D), float
        Training features.
    y_train : array-like of shape (N,), int
        Training labels in ``0 .. n_classes - 1`` (n_classes: the largest label of any set + 1).
    X_test : array-like of shape (M, D), float
        Test features.
    y_test : array-like of shape (M,), int
        Test labels.
    columns : list of B array-like of int, optional
        Column indices of each probe (subset widths may differ), fitted together by
        :func:`fit_logreg_masked` in groups of similar width (``max_probes`` at most) on the
        union of the group's columns; a column set given twice is fitted once.
    projections : list of B array-like of shape (D, k_b), optional
        Projection matrix of each probe; those of equal width are fitted together by
        :func:`fit_logreg` in chunks of at most ``max_batch_bytes``.  Not together with
        ``columns``; neither: one probe on all of X.
    eval_sets : dict of str to (X, y), optional
        ``{name: (X (M_s, D), y (M_s,))}``: further sets each probe is scored on (e.g. a dev
        split), with the same fits as the test accuracy; no name may be ``"test"``.
    C : float, default 1.0
        Inverse regularisation strength (> 0), as in ``LogisticRegression``.
    max_iter : int, default 500
        Most solver iterations (>= 1).
    tol : float, default :data:`TOL`
        Stop when the largest gradient entry is <= ``tol`` (> 0).
    standardize : bool, default True
        Standardise with the training mean and std (:func:`standardization`).
    precondition : bool or None, default None
        Passed to the fitter; None: its default (whitening where it pays).
    precision : {"auto", "fp32", "bf16"} or None, default None
        As in :func:`fit_logreg`; None: :func:`diffred.core.precision.setting` (a chapter's
        ``precision`` parameter).
    device : str or None, default None
        Torch device; None: CUDA when present, else CPU.
    max_batch_bytes : float, default 2e9
        Float32 bytes of the projected features (training, test and ``eval_sets`` rows) per
        chunk of ``projections``.
    max_probes : int, default 80
        Most probes in one group of ``columns``.

    Returns
    -------
    ProbeResult
        ``accuracy`` (B,), ``per_class`` (B, n_classes), widths ``k`` (B,),
        ``eval_accuracy`` ``{name: (B,)}``, the test hits ``correct`` (B, M) and
        ``converged`` (B,), in the order of ``columns`` or ``projections`` (B = 1 for
        neither).
    """
    torch = _torch()
    _check_settings(C, max_iter, tol)
    precision = chosen(precision)
    if columns is not None and projections is not None:
        raise ValueError("probe_accuracy takes columns or projections, not both")
    device = device or default_device()
    sets = {"test": (X_test, y_test), **(eval_sets or {})}
    if len(sets) != 1 + len(eval_sets or {}):
        raise ValueError("eval_sets may not be named 'test' (the test set's scores are "
                         "accuracy / per_class)")
    for s, (Xs, ys) in [("train", (X_train, y_train)), *sets.items()]:
        if len(Xs) != len(ys):
            raise ValueError(f"{s} set: {len(Xs)} rows but {len(ys)} labels")
    X = {s: _tensor(Xs, device) for s, (Xs, _) in sets.items()}
    y = {s: torch.tensor(np.asarray(ys, dtype=np.int64), device=device)
         for s, (_, ys) in sets.items()}
    Xtr = _tensor(X_train, device)
    ytr = torch.tensor(np.asarray(y_train, dtype=np.int64), device=device)
    n_classes = int(max([ytr.max()] + [v.max() for v in y.values()])) + 1
    if columns is None and projections is None:
        columns = [np.arange(Xtr.shape[1])]
    source = None
    if columns is not None:
        # the same column set twice is fitted once: source[i] = its distinct set
        distinct: dict = {}
        source = np.array([distinct.setdefault(np.unique(np.asarray(c)).tobytes(), len(distinct))
                           for c in columns])
        columns = [columns[i] for i in np.unique(source, return_index=True)[1]]
        widths = np.array([len(c) for c in columns])
        groups = _width_groups(widths, max_probes)
        if standardize:          # in place: the tensors are this call's own copies
            mean, scale = standardization(Xtr)
            for t in (Xtr, *X.values()):
                t.sub_(mean).div_(scale)
    else:
        widths = np.array([np.shape(P)[1] for P in projections])
        rows = len(Xtr) + sum(len(v) for v in X.values())
        groups = []
        for width in np.unique(widths):                     # same width: one batched problem
            members = np.flatnonzero(widths == width)
            chunk = max(1, int(max_batch_bytes // (4 * width * rows)))
            groups += [members[i:i + chunk] for i in range(0, len(members), chunk)]
    hits = {s: np.zeros(len(widths)) for s in sets}
    per_class = np.zeros((len(widths), n_classes))
    correct = np.zeros((len(widths), len(y["test"])), dtype=bool)
    converged = np.zeros(len(widths), dtype=bool)
    for idx in groups:
        if columns is not None:
            # only the union of the group's columns enters the shared matrix product
            union = np.unique(np.concatenate([np.asarray(columns[i]) for i in idx]))
            masks = torch.zeros(len(idx), len(union), dtype=torch.bool, device=device)
            for row, i in enumerate(idx):
                where = torch.as_tensor(np.searchsorted(union, columns[i]), device=device)
                masks[row, where] = True
            every = len(union) == Xtr.shape[1]
            cols = torch.as_tensor(union, device=device)
            W, b, n_iter = fit_logreg_masked(
                Xtr if every else Xtr[:, cols], ytr, masks, n_classes, C=C, max_iter=max_iter,
                tol=tol, precondition=precondition, precision=precision,
                return_iterations=True)
            logits = {s: torch.einsum("md,bdc->bmc", Xs if every else Xs[:, cols], W)
                      + b.unsqueeze(1) for s, Xs in X.items()}                 # (B, M, C)
        else:
            P = torch.as_tensor(np.stack([np.asarray(projections[i], np.float32)
                                          for i in idx]), device=device)   # (B, D, k)
            Ztr = torch.matmul(Xtr, P)
            mean, scale = standardization(Ztr, dim=1) if standardize else (0.0, 1.0)
            W, b, n_iter = fit_logreg((Ztr - mean) / scale, ytr, n_classes, C=C,
                                      max_iter=max_iter, tol=tol, precondition=precondition,
                                      precision=precision, return_iterations=True)
            logits = {s: torch.baddbmm(b.unsqueeze(1), (torch.matmul(Xs, P) - mean) / scale, W)
                      for s, Xs in X.items()}
        converged[idx] = (n_iter < max_iter).cpu().numpy()
        for s, lg in logits.items():
            hit = (lg.argmax(-1) == y[s]).float()                               # (B, M)
            hits[s][idx] = hit.mean(1).cpu().numpy()
            if s == "test":
                correct[idx] = hit.bool().cpu().numpy()
                for c in range(n_classes):
                    sel = y[s] == c
                    per_class[idx, c] = hit[:, sel].mean(1).cpu().numpy() if sel.any() else np.nan
    if source is not None:
        hits = {s: a[source] for s, a in hits.items()}
        per_class, widths = per_class[source], widths[source]
        correct, converged = correct[source], converged[source]
    return ProbeResult(hits.pop("test"), per_class, widths, hits, correct, converged)


# ============================================================================ estimator
def _features(X, name: str = "X") -> np.ndarray:
    """X as a float32 (n_samples, n_features) array, or ValueError naming what is wrong."""
    A = np.asarray(X, dtype=np.float32)
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return A


class LinearProbe:
    """Multinomial L2 logistic regression on standardised features, scikit-learn style.

    ``LinearProbe(C=1).fit(X, y).score(X_test, y_test)`` — the objective of
    ``make_pipeline(StandardScaler(), LogisticRegression(C=1))``, solved by the batched
    L-BFGS of :func:`fit_logreg_masked` (one probe on all columns).

    Parameters
    ----------
    C : float, default 1.0
        Inverse regularisation strength (> 0), as in ``LogisticRegression``.
    max_iter : int, default 500
        Most L-BFGS iterations (>= 1).
    tol : float, default :data:`TOL`
        Stop when the largest gradient entry is <= ``tol`` (> 0).
    standardize : bool, default True
        Standardise each feature with its training mean and std (:func:`standardization`).
    device : str or None, default None
        Torch device of the fit and of predictions; None: CUDA when present, else CPU.
    precision : {"auto", "fp32", "bf16"} or None, default None
        Arithmetic of the solver's two big products (see :func:`fit_logreg`); the stopping
        test is always evaluated in float32.  None: :func:`diffred.core.precision.setting`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted labels seen by ``fit``.
    n_features_in_ : int
        Number of features seen by ``fit``.
    mean_ : ndarray of shape (n_features,)
        Training mean of each feature (zeros if ``standardize=False``).
    scale_ : ndarray of shape (n_features,)
        Training std of each feature, floored at 1e-6 (ones if ``standardize=False``).
    coef_ : ndarray of shape (n_classes, n_features)
        Weights on the standardised features (one row per class, also for two classes):
        ``decision_function(X) = ((X - mean_) / scale_) @ coef_.T + intercept_``.
    intercept_ : ndarray of shape (n_classes,)
        Intercept of each class.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 500, tol: float = TOL,
                 standardize: bool = True, device: str | None = None,
                 precision: str | None = None):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.standardize = standardize
        self.device = device
        self.precision = precision

    def fit(self, X, y) -> LinearProbe:
        """Fit the probe on features X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features (finite; converted to float32).
        y : array-like of shape (n_samples,)
            Labels, at least 2 distinct values (they become ``classes_``, sorted).

        Returns
        -------
        self : LinearProbe
            The fitted probe.
        """
        torch = _torch()
        _check_settings(self.C, self.max_iter, self.tol)
        precision = chosen(self.precision)
        X = _features(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must hold one label per row of X ({len(X)}), got shape {y.shape}")
        classes, yi = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y needs at least 2 classes, got {len(classes)}: {classes.tolist()}")
        dev = self.device or default_device()
        Xt = _tensor(X, dev)
        D = Xt.shape[1]
        if self.standardize:
            mean, scale = standardization(Xt)
        else:
            mean, scale = torch.zeros(1, D, device=dev), torch.ones(1, D, device=dev)
        everything = torch.ones(1, D, dtype=torch.bool, device=dev)
        W, b = fit_logreg_masked((Xt - mean) / scale, torch.as_tensor(yi, device=dev),
                                 everything, len(classes), C=self.C, max_iter=self.max_iter,
                                 tol=self.tol, precision=precision)
        self.classes_, self.n_features_in_ = classes, D
        self.mean_, self.scale_ = mean[0].cpu().numpy(), scale[0].cpu().numpy()
        self.coef_, self.intercept_ = W[0].T.cpu().numpy(), b[0].cpu().numpy()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Class scores of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, as many as seen by ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float32
            ``((X - mean_) / scale_) @ coef_.T + intercept_``.
        """
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("this LinearProbe is not fitted yet: call fit(X, y) first")
        X = _features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but this LinearProbe was fitted "
                             f"with {self.n_features_in_}")
        torch = _torch()
        dev = self.device or default_device()
        mean, scale, W, b = (torch.as_tensor(a, device=dev)
                             for a in (self.mean_, self.scale_, self.coef_, self.intercept_))
        return (((_tensor(X, dev) - mean) / scale) @ W.T + b).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted labels of X: the class of highest score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, as many as seen by ``fit``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Elements of ``classes_``.
        """
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(1)]

    def score(self, X, y) -> float:
        """Mean accuracy on X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, as many as seen by ``fit``.
        y : array-like of shape (n_samples,)
            True labels.

        Returns
        -------
        float
            Fraction of rows whose predicted label equals ``y``.
        """
        return float((self.predict(X) == np.asarray(y)).mean())
