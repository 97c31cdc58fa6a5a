"""Few-shot transfer on frozen features: feature redundancy and soft masking (Luo et al. 2023).

An N-way K-shot *episode* draws N classes from a pool of cached features, K support and
Q query images per class; a classifier fitted on the support is scored on the queries.
Everything here is batched over episodes: E episodes are one tensor problem of shape
(E, N*K, D), solved on the GPU when there is one.

* :func:`load_pool` — the episode pool (cached features, plus augmented views of a subset);
  :func:`split_indices` / :meth:`Pool.take` — its seeded, stratified split into a *selection*
  part (where tuned settings are chosen) and a *report* part (where results are measured).
* :func:`sample_episodes` — seeded episodes with disjoint support and query sets.
* :func:`importance` / :func:`two_way_importance` — per-dimension importance.
* :func:`episode_accuracy` — batched logistic regression (the probe engine's Nesterov
  solver, :func:`diffred.core.probe.fit_logreg`) or nearest centroid.
* :func:`fraction_curves`, :func:`precursor_two_way`, :func:`confounders`,
  :func:`soft_mask_comparison` — the chapter's experiments on real features, each returning a
  tidy DataFrame cached by content (pool features, settings, code: a warm rerun computes
  nothing); :func:`confounder_simulation` — the paper's theory on a Gaussian model (synthetic
  data, labelled as such).  Tables and charts: :mod:`diffred.studies.fewshot.report`; intervals
  and tests: :mod:`diffred.core.stats`; the paper's claims and verdicts:
  :mod:`diffred.studies.fewshot.paper`; the mask-selection rule:
  :func:`diffred.studies.fewshot.runs.select_mask_settings`.

Feature pipeline (as in the authors' precursor code, Channel_Importance_FSL): optionally keep
a subset of dimensions (hard mask) or multiply by ``importance / mean|x|`` (soft mask), then
L2-normalise each feature vector, then fit ``LogisticRegression(C=1)`` (no standardisation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from diffred.core.cache import cached_table
from diffred.core.errors import check_choice
from diffred.core.probe import fit_logreg
from diffred.core.stats import benjamini_hochberg, sign_test_pvalues, z_interval

CLASSIFIERS = ("lr", "nc")
RANKINGS = ("oracle", "random")
EPS = 1e-12


def _torch():
    import torch
    return torch


# --------------------------------------------------------------------------- the pool
@dataclass
class Pool:
    """Cached features of one backbone on one dataset split.

    X: (P, D) float32 centre-resized features; y: (P,) int64 labels;
    views: (P, V, D) float32 augmented views, valid where ``has_views`` (P,) bool
    (rows without views are zeros); meta: provenance (model, weights, dataset, subset).
    """
    X: np.ndarray
    y: np.ndarray
    classes: list
    views: np.ndarray | None
    has_views: np.ndarray
    meta: dict

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def cache_spec(self) -> dict:
        """What a pool is, by content (its features' cache keys): the key of cached results."""
        return self.meta

    def take(self, idx, part: str, **spec) -> Pool:
        """The items ``idx`` as a pool of their own (``part`` and ``spec`` enter its meta, so
        its cached results are its own); class statistics of the part use only its items."""
        idx = np.sort(np.asarray(idx))
        return Pool(self.X[idx], self.y[idx], self.classes,
                    None if self.views is None else self.views[idx], self.has_views[idx],
                    {**self.meta, "part": part, **spec})


def split_indices(y, has_views, selection_share: float = 0.5, seed: int = 0):
    """Seeded split of pool items into (selection, report) index arrays, stratified by class
    and by whether an item has augmented views: in every class, ``round(share * n)`` of its
    view candidates and of its other items go to selection.  Images, not episodes, are split,
    so no selection episode shares an image with a report episode."""
    if not 0 < selection_share < 1:
        raise ValueError(f"selection_share must lie in (0, 1), got {selection_share!r}")
    y, has_views = np.asarray(y), np.asarray(has_views, bool)
    rng = np.random.default_rng([seed, 2])
    selection = []
    for c in np.unique(y):
        for group in (True, False):
            idx = rng.permutation(np.flatnonzero((y == c) & (has_views == group)))
            selection.append(idx[:int(round(selection_share * len(idx)))])
    selection = np.sort(np.concatenate(selection))
    return selection, np.setdiff1d(np.arange(len(y)), selection)


def split_pool(pool: Pool, selection_share: float = 0.5, seed: int = 0):
    """(selection part, report part) of ``pool`` by :func:`split_indices`."""
    sel, rep = split_indices(pool.y, pool.has_views, selection_share, seed)
    spec = {"selection_share": selection_share, "split_seed": seed}
    return pool.take(sel, "selection", **spec), pool.take(rep, "report", **spec)


def load_pool(model: str, dataset: str, *, split: str = "test", n_per_class: int = 100,
              seed: int = 0, resolution: int = 160, views: int = 4,
              view_candidates_per_class: int = 20, device: str | None = None,
              progress: bool = True) -> Pool:
    """Features of a seeded stratified subset, plus ``views`` augmented views (random resized
    crop + flip through the backbone) of ``view_candidates_per_class`` images per class — the
    images a soft-mask episode may draw its support from.  Both come from the shared cache.
    """
    from diffred.core.datasets import load_dataset
    from diffred.core.extract import features
    data = load_dataset(dataset, split, n_per_class=n_per_class, seed=seed)
    plain = features(model, data, resolution=resolution, device=device, progress=progress)
    P, D = plain.X.shape
    has_views = np.zeros(P, bool)
    all_views = None
    if views:
        rng = np.random.default_rng([seed, 1])
        pick = np.sort(np.concatenate([rng.permutation(np.flatnonzero(data.labels == c))
                                       [:view_candidates_per_class]
                                       for c in range(len(data.classes))]))
        aug = features(model, data.take(pick, view_candidates=view_candidates_per_class),
                       resolution=resolution, views=views, device=device, progress=progress)
        all_views = np.zeros((P, views, D), np.float32)
        all_views[pick] = aug.X
        has_views[pick] = True
    meta = {"model": model, "weights": plain.meta.get("weights"), "dataset": dataset,
            "split": split, "subset": f"n_per_class={n_per_class}", "seed": seed,
            "resolution": resolution, "views": views, "features": plain.meta["key"],
            "view_features": aug.meta["key"] if views else None}
    return Pool(np.array(plain.X, np.float32), np.array(plain.y), list(data.classes),
                all_views, has_views, meta)


# --------------------------------------------------------------------------- episodes
@dataclass
class Episodes:
    """E episodes as pool indices: classes (E, N); support (E, N, K); query (E, N, Q).

    Episode labels are positions 0..N-1 in ``classes``; support and query are disjoint."""
    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray

    @property
    def shape(self):
        return self.support.shape[0], self.support.shape[1], self.support.shape[2], \
            self.query.shape[2]


def sample_episodes(y: np.ndarray, n_way: int, k_shot: int, n_query: int, n_episodes: int,
                    seed: int = 0, support_from: np.ndarray | None = None) -> Episodes:
    """Seeded N-way K-shot episodes over labels ``y`` (P,).

    ``support_from``: optional (P,) bool — only these items may be support (e.g. those with
    augmented views); queries are drawn from all remaining items of the class.
    Classes with too few items are never drawn; if fewer than ``n_way`` remain, ValueError.
    """
    y = np.asarray(y)
    support_from = np.ones(len(y), bool) if support_from is None else np.asarray(support_from)
    members = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    eligible = [c for c, idx in members.items()
                if support_from[idx].sum() >= k_shot and len(idx) >= k_shot + n_query]
    if len(eligible) < n_way:
        raise ValueError(f"only {len(eligible)} classes have >= {k_shot}+{n_query} items "
                         f"(shots+queries); n_way={n_way} needs {n_way}")
    rng = np.random.default_rng(seed)
    classes = np.empty((n_episodes, n_way), np.int64)
    support = np.empty((n_episodes, n_way, k_shot), np.int64)
    query = np.empty((n_episodes, n_way, n_query), np.int64)
    for e in range(n_episodes):
        classes[e] = rng.choice(eligible, n_way, replace=False)
        for i, c in enumerate(classes[e]):
            idx = members[c]
            s = rng.choice(idx[support_from[idx]], k_shot, replace=False)
            rest = np.setdiff1d(idx, s)
            support[e, i] = s
            query[e, i] = rng.choice(rest, n_query, replace=False)
    return Episodes(classes, support, query)


# --------------------------------------------------------------------------- importance
def two_way_importance(mu1, mu2, sigma1, sigma2):
    """The precursor code's 2-way oracle importance ``2|mu1-mu2| / (sigma1+sigma2)``,
    L2-normalised over the last (feature) axis.  Inputs (..., D) tensors."""
    torch = _torch()
    imp = 2 * (mu1 - mu2).abs() / (sigma1 + sigma2 + EPS)
    return torch.nn.functional.normalize(imp, dim=-1, eps=EPS)


def importance(mu, sigma, shrink: float = 0.0):
    """Multi-class Fisher-style ratio ``2 std_c(mu_c) / mean_c(sigma_c)``, L2-normalised.

    mu, sigma: (..., N, D) per-class means and standard deviations -> (..., D).
    For N = 2 it equals :func:`two_way_importance` (std of two numbers is half their gap).
    ``shrink`` > 0 adds ``shrink * mean_d(sigma)`` to every dimension's spread: a floor for
    estimates from a handful of support views, where a dimension that happens to be constant
    (e.g. zero after ReLU) would otherwise get sigma = 0 and an unbounded ratio.
    """
    torch = _torch()
    between = mu.std(dim=-2, unbiased=False)
    within = sigma.mean(dim=-2)
    within = within + shrink * within.mean(dim=-1, keepdim=True)
    return torch.nn.functional.normalize(2 * between / (within + EPS), dim=-1, eps=EPS)


def class_statistics(X, y, n_classes: int, ddof: int = 0):
    """Per-class mean, std and mean |x|: each (n_classes, D), from X (P, D).  ``ddof=1``: the
    unbiased std of the precursor code (``torch.std``)."""
    torch = _torch()
    onehot = torch.nn.functional.one_hot(y, n_classes).to(X.dtype)       # (P, C)
    count = onehot.sum(0).clamp_min(1)[:, None]
    mu = onehot.T @ X / count
    var = (onehot.T @ (X * X) / count - mu * mu).clamp_min(0)
    var = var * count / (count - ddof).clamp_min(1)
    return mu, var.sqrt(), onehot.T @ X.abs() / count


def soft_mask(imp, abs_mean, shrink: float = 0.0):
    """Per-dimension scale ``importance / mean|x|`` (..., D) — the precursor's feature
    re-weighting; features are L2-normalised after scaling.  ``shrink`` > 0 floors mean|x| at
    ``shrink * mean_d(mean|x|)`` so near-silent dimensions are not blown up."""
    return imp / (abs_mean + shrink * abs_mean.mean(dim=-1, keepdim=True) + EPS)


# --------------------------------------------------------------------------- classifiers
def _normalize(Z):
    return _torch().nn.functional.normalize(Z, dim=-1, eps=EPS)


def reduce_to_span(S, Q):
    """Exact change of basis to the span of each episode's support features.

    S: (E, M, D), Q: (E, T, D) -> (E, M, r), (E, T, r) with r = min(M, D).  An L2-penalised
    linear model's weights lie in the span of its training rows, so logistic regression on the
    reduced coordinates has the same objective, predictions and accuracy — at cost O(M) not
    O(D) per iteration.
    """
    torch = _torch()
    E, M, D = S.shape
    if D <= M:
        return S, Q
    G = torch.bmm(S, S.transpose(1, 2)).double()                     # (E, M, M)
    evals, U = torch.linalg.eigh(G)
    keep = evals > evals[:, -1:] * 1e-9
    sval = evals.clamp_min(0).sqrt()
    inv = torch.where(keep, 1 / sval.clamp_min(1e-30), torch.zeros_like(sval))
    Zs = (U * torch.where(keep, sval, torch.zeros_like(sval))[:, None, :]).to(S.dtype)
    Zq = (torch.bmm(Q, S.transpose(1, 2)).double() @ U * inv[:, None, :]).to(S.dtype)
    return Zs, Zq


def episode_accuracy(S, Q, n_way: int, classifier: str = "lr", C: float = 1.0,
                     normalize: bool = True, tol: float = 1e-4, max_iter: int = 3000):
    """Accuracy of E episodes at once.

    S: (E, N*K, D) support, class-major (label of row i = i // K); Q: (E, N*T, D) queries,
    class-major.  classifier 'lr': multinomial logistic regression (scikit-learn's
    ``LogisticRegression(C)`` objective, no standardisation), all episodes solved together
    by :func:`diffred.core.probe.fit_logreg` (``solver="nesterov"``) on the span of each support
    set; 'nc': nearest centroid (Euclidean).  Features are L2-normalised first unless
    ``normalize=False``.  ``tol``: LR gradient tolerance (scikit-learn's default 1e-4, same
    scaling); ``max_iter``: most Nesterov steps.
    Returns (E,) accuracies as a torch tensor.
    """
    torch = _torch()
    check_choice("classifier", classifier, CLASSIFIERS)
    E, M, _ = S.shape
    k_shot, n_q = M // n_way, Q.shape[1] // n_way
    y_s = torch.arange(n_way, device=S.device).repeat_interleave(k_shot)
    y_q = torch.arange(n_way, device=S.device).repeat_interleave(n_q)
    if normalize:
        S, Q = _normalize(S), _normalize(Q)
    if classifier == "nc":
        centroids = S.view(E, n_way, k_shot, -1).mean(2)                 # (E, N, D)
        pred = torch.cdist(Q, centroids).argmin(-1)
    else:
        Zs, Zq = reduce_to_span(S, Q)
        W, b = fit_logreg(Zs, y_s, n_way, C=C, max_iter=max_iter, tol=tol, solver="nesterov")
        pred = torch.baddbmm(b.unsqueeze(1), Zq, W).argmax(-1)
    return (pred == y_q).float().mean(1)


def gather_episodes(X, episodes: Episodes, device=None):
    """Support (E, N*K, D) and query (E, N*T, D) tensors of pool features X (P, D)."""
    torch = _torch()
    X = torch.as_tensor(np.asarray(X), device=device)
    E = len(episodes.classes)
    s = torch.as_tensor(episodes.support.reshape(E, -1), device=device)
    q = torch.as_tensor(episodes.query.reshape(E, -1), device=device)
    return X[s], X[q]


def _take_columns(Z, cols):
    """Z (E, M, D), cols (E, k) -> (E, M, k)."""
    return Z.gather(2, cols[:, None, :].expand(-1, Z.shape[1], -1))


def _chunks(n, size):
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _frame(rows: list, pool: Pool) -> pd.DataFrame:
    """The rows as a table; with no rows (no shot count the pool can serve) a header-only
    table, which the cache's CSV round trip can store."""
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*_provenance(pool), "shots"])


def _provenance(pool: Pool) -> dict:
    return {k: pool.meta[k] for k in ("model", "weights", "dataset", "subset", "seed")}


def _pool_tensors(pool: Pool, device):
    """L2-normalised features and their oracle class statistics (mean, unbiased std, mean|x|
    over all the pool's items of each class), as the precursor computes them (test.py)."""
    torch = _torch()
    X = _normalize(torch.as_tensor(pool.X, device=device))
    y = torch.as_tensor(pool.y, device=device)
    return X, y, class_statistics(X, y, pool.n_classes, ddof=1)


# --------------------------------------------------------------------------- experiment 1
def _widths(fractions, D):
    return {f: max(1, int(round(f * D))) for f in fractions}


@cached_table("fewshot")
def fraction_curves(pool: Pool, shots=(1, 5, 10, 20),
                    fractions=(0.005, 0.01, 0.02, 0.05, 0.2, 1.0), *, n_way: int = 5,
                    n_query: int = 15, n_episodes: int = 600, seed: int = 0,
                    classifier: str = "lr", ci_ddof: int = 1, episode_batch: int = 300,
                    device: str | None = None) -> pd.DataFrame:
    """Accuracy when keeping only the top fraction of dimensions, ranked per episode by oracle
    importance (:func:`importance` from the class statistics of the episode's classes over the
    whole pool, L2-normalised features, unbiased std; for ``n_way=2`` exactly the precursor's
    ``2|mu1-mu2|/(sigma1+sigma2)``) or at random; ``fractions`` must include 1.0.

    One row per (shots, fraction, ranking): k (= round(fraction * D), at least 1), accuracy, ci95,
    and the paired difference to all dimensions on the same episodes (diff_full,
    diff_full_ci95).  Shot counts the pool cannot serve (too few items per class) are skipped.
    """
    from diffred.core.device import default_device
    torch = _torch()
    if 1.0 not in fractions:
        raise ValueError(f"fractions must include 1.0 (all dimensions), got {list(fractions)}")
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X, _, (mu, sd, _) = _pool_tensors(pool, device)
    D = X.shape[1]
    width = _widths(fractions, D)
    rows = []
    for K in shots:
        try:
            ep = sample_episodes(pool.y, n_way, K, n_query, n_episodes, seed=seed + K)
        except ValueError:
            continue
        acc = {(k, r): [] for k in set(width.values()) for r in RANKINGS}
        gen = torch.Generator(device="cpu").manual_seed(seed + K)
        for part in _chunks(n_episodes, episode_batch):
            sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
            S, Q = gather_episodes(X, sub, device)
            cls = torch.as_tensor(sub.classes, device=device)
            order = {"oracle": importance(mu[cls], sd[cls]).argsort(dim=-1, descending=True),
                     "random": torch.stack([torch.randperm(D, generator=gen)
                                            for _ in range(len(cls))]).to(device)}
            for k, r in acc:
                if k == D and r == "random":
                    continue
                cols = order[r][:, :k]
                acc[(k, r)].append(episode_accuracy(_take_columns(S, cols),
                                                    _take_columns(Q, cols), n_way,
                                                    classifier).cpu().numpy())
        full = np.concatenate(acc[(D, "oracle")])
        for f, k in width.items():
            for r in RANKINGS:
                a = full if k == D else np.concatenate(acc[(k, r)])
                m, ci = z_interval(a, ci_ddof)
                d, d_ci = z_interval(a - full, ci_ddof)
                rows.append({**_provenance(pool), "classifier": classifier, "n_way": n_way,
                             "shots": K, "ranking": r, "fraction_requested": f, "k": k,
                             "fraction": k / D, "accuracy": m, "ci95": ci, "diff_full": d,
                             "diff_full_ci95": d_ci, "n_episodes": n_episodes})
    return _frame(rows, pool)


@cached_table("fewshot")
def precursor_two_way(pool: Pool, shots=(1, 5), *, n_query: int = 15, n_episodes: int = 2000,
                      seed: int = 0, episode_batch: int = 500,
                      device: str | None = None) -> pd.DataFrame:
    """The precursor's oracle experiment exactly (Channel_Importance_FSL, LR.py / test.py):
    2-way episodes; per channel ``w = 2|mu1-mu2|/(sigma1+sigma2)`` from the two classes'
    statistics over all the pool's images (L2-normalised features, unbiased std),
    L2-normalised; features multiplied by ``w / all_mean`` (all_mean: count-weighted mean |x|
    of the two classes), then L2-normalised; ``LogisticRegression(C=1)`` on the support
    (the batched solver of :func:`episode_accuracy`, same objective and tolerance); 95% CI
    ``1.96 np.std / sqrt(n)`` (ddof 0) as in test.py.

    One row per (shots, method) with method 'none' (plain features, the precursor's "None")
    or 'oracle' (the re-weighting), accuracy, ci95, and the paired gain of 'oracle' over 'none'.
    """
    from diffred.core.device import default_device
    torch = _torch()
    device = device or default_device()
    X, y, (mu, sd, absmean) = _pool_tensors(pool, device)
    count = torch.bincount(y, minlength=pool.n_classes).to(X.dtype)
    rows = []
    for K in shots:
        try:
            ep = sample_episodes(pool.y, 2, K, n_query, n_episodes, seed=seed + 200 + K)
        except ValueError:
            continue
        none, oracle = [], []
        for part in _chunks(n_episodes, episode_batch):
            sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
            S, Q = gather_episodes(X, sub, device)
            c1, c2 = (torch.as_tensor(sub.classes[:, i], device=device) for i in (0, 1))
            w = two_way_importance(mu[c1], mu[c2], sd[c1], sd[c2])
            n1, n2 = count[c1][:, None], count[c2][:, None]
            scale = soft_mask(w, (n1 * absmean[c1] + n2 * absmean[c2]) / (n1 + n2))[:, None]
            none.append(episode_accuracy(S, Q, 2).cpu().numpy())
            oracle.append(episode_accuracy(S * scale, Q * scale, 2).cpu().numpy())
        none, oracle = np.concatenate(none), np.concatenate(oracle)
        for method, a in (("none", none), ("oracle", oracle)):
            m, ci = z_interval(a, ddof=0)
            g, g_ci = z_interval(a - none, ddof=0)
            rows.append({**_provenance(pool), "n_way": 2, "shots": K, "method": method,
                         "accuracy": m, "ci95": ci, "gain": g, "gain_ci95": g_ci,
                         "n_episodes": n_episodes})
    return _frame(rows, pool)


# --------------------------------------------------------------------------- experiment 2
@cached_table("fewshot")
def confounders(pool: Pool, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                n_episodes: int = 600, seed: int = 0, fdr: float = 0.05,
                episode_batch: int = 50, device: str | None = None) -> pd.DataFrame:
    """Per dimension d of the L2-normalised features: within-class variance, distance between
    class centroids, and the change of nearest-centroid K-shot accuracy when d is dropped.

    Dropping d removes its term from every squared query-centroid distance, so all D drops
    are evaluated at once per episode batch: tensor (E, T, N, D).  Significance: an exact
    two-sided sign test over *episodes* (independent units: does dropping d raise or lower an
    episode's accuracy?), then Benjamini–Hochberg over the D dimensions (q_value).
    Returns one row per dimension (dim, within_var, centroid_dist, delta_accuracy, p_value,
    q_value, episodes_up, episodes_down, effect: 'dropping helps' / 'dropping hurts' where
    q_value <= ``fdr``, else 'no clear effect').
    """
    from diffred.core.device import default_device
    torch = _torch()
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X = _normalize(torch.as_tensor(pool.X, device=device))
    y = torch.as_tensor(pool.y, device=device)
    mu, sd, _ = class_statistics(X, y, pool.n_classes)
    ep = sample_episodes(pool.y, n_way, k_shot, n_query, n_episodes, seed=seed)
    D = X.shape[1]
    gain = torch.zeros(D, device=device, dtype=torch.float64)
    up = torch.zeros(D, device=device, dtype=torch.int64)
    down = torch.zeros(D, device=device, dtype=torch.int64)
    y_q = torch.arange(n_way, device=device).repeat_interleave(n_query)
    for part in _chunks(n_episodes, episode_batch):
        sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
        S, Q = gather_episodes(X, sub, device)
        E = S.shape[0]
        centroids = S.view(E, n_way, k_shot, D).mean(2)                   # (E, N, D)
        terms = (Q[:, :, None, :] - centroids[:, None, :, :]) ** 2        # (E, T, N, D)
        dist = terms.sum(-1)                                              # (E, T, N)
        full = (dist.argmin(-1) == y_q).float()                           # (E, T)
        dropped = (dist[..., None] - terms).argmin(2) == y_q[None, :, None]   # (E, T, D)
        net = (dropped.float() - full[..., None]).sum(1)                  # (E, D)
        gain += net.sum(0).double()
        up += (net > 0).sum(0)
        down += (net < 0).sum(0)
    delta = (gain / (n_episodes * n_way * n_query)).cpu().numpy()
    p = sign_test_pvalues(up.cpu().numpy(), down.cpu().numpy())
    q = benjamini_hochberg(p)
    effect = np.where(q > fdr, "no clear effect",
                      np.where(delta > 0, "dropping helps", "dropping hurts"))
    return pd.DataFrame({**_provenance(pool), "dim": np.arange(D),
                         "within_var": (sd ** 2).mean(0).cpu().numpy(),
                         "centroid_dist": (mu.std(0, unbiased=False) * 2).cpu().numpy(),
                         "delta_accuracy": delta, "episodes_up": up.cpu().numpy(),
                         "episodes_down": down.cpu().numpy(), "p_value": p,
                         "q_value": q, "effect": effect, "shots": k_shot,
                         "n_episodes": n_episodes})


@cached_table("fewshot")
def confounder_simulation(shots=(1, 2, 5, 10, 20, 50), *, n_way: int = 5,
                          n_informative: int = 20, n_confounding: int = 200,
                          informative_spread: float = 0.6, confounding_spread: float = 0.3,
                          confounding_sd: float = 1.5, n_query: int = 15,
                          n_episodes: int = 2000, seed: int = 0, episode_batch: int = 250,
                          device: str | None = None) -> pd.DataFrame:
    """A simulation of the paper's theory on a Gaussian model — synthetic data, not a result
    on real features.  Every episode draws N class centroids: ``n_informative`` dimensions
    with centroids ~ N(0, informative_spread^2) and within-class std 1, and ``n_confounding``
    with small centroid spread (``confounding_spread``) and large within-class std
    (``confounding_sd``).  Nearest-centroid accuracy (Euclidean, K support / Q query points
    per class) with all dimensions vs the informative ones only, on the same episodes.
    One row per K: accuracy_all, accuracy_informative (with their 95% CI half-widths
    accuracy_all_ci95, accuracy_informative_ci95), gain of dropping the confounders
    (paired, with CI)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    D = n_informative + n_confounding
    spread = torch.cat([torch.full((n_informative,), informative_spread),
                        torch.full((n_confounding,), confounding_spread)])
    sd = torch.cat([torch.ones(n_informative), torch.full((n_confounding,), confounding_sd)])
    keep = torch.arange(n_informative)
    rows = []
    for K in shots:
        full, informative = [], []
        for part in _chunks(n_episodes, episode_batch):
            E = part.stop - part.start
            mu = spread * torch.randn(E, n_way, 1, D, generator=g)
            S = (mu + sd * torch.randn(E, n_way, K, D, generator=g)).reshape(E, -1, D)
            Q = (mu + sd * torch.randn(E, n_way, n_query, D, generator=g)).reshape(E, -1, D)
            full.append(episode_accuracy(S, Q, n_way, "nc", normalize=False).numpy())
            informative.append(episode_accuracy(S[..., keep], Q[..., keep], n_way, "nc",
                                                normalize=False).numpy())
        full, informative = np.concatenate(full), np.concatenate(informative)
        (a, a_ci), (b, b_ci) = z_interval(full), z_interval(informative)
        gain, gain_ci = z_interval(informative - full)
        rows.append({"shots": K, "accuracy_all": a, "accuracy_all_ci95": a_ci,
                     "accuracy_informative": b, "accuracy_informative_ci95": b_ci,
                     "gain": gain, "gain_ci95": gain_ci,
                     "n_informative": n_informative, "n_confounding": n_confounding,
                     "n_episodes": n_episodes, "data": "simulated (Gaussian model)"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- experiment 3
METHODS = ("no mask", "augmented support, no mask", "hard top-k (support)",
           "soft mask (support)", "soft mask (oracle)")
REFERENCES = ("augmented support, no mask", "soft mask (oracle)")


@cached_table("fewshot")
def soft_mask_comparison(pool: Pool, shots=(1, 5), *, n_way: int = 5, n_query: int = 15,
                         n_episodes: int = 600, seed: int = 0, shrinks=(0.5,),
                         topk_fractions=(0.05,), references: bool = True,
                         classifiers=CLASSIFIERS, episode_batch: int = 300,
                         device: str | None = None) -> pd.DataFrame:
    """No mask vs masks estimated from the support set alone (its K images x V augmented views
    plus originals): hard top-k and soft mask, for every value of ``shrinks`` (and, for the
    hard mask, of ``topk_fractions``); with ``references``, also training on the augmented
    views without a mask, and the soft mask from oracle statistics (all the pool's images).

    All methods see the same episodes, so gains are paired: ``gain`` and ``gain_ci95`` are the
    mean and 95% CI of the per-episode difference to 'no mask'.  ``shrink`` regularises the
    support estimates (see :func:`importance`, :func:`soft_mask`); oracle ones use none.
    Rows carry ``shrink`` / ``topk_fraction`` (empty where a method does not use them).
    Run it on a selection part to choose the settings, on a report part to measure them.
    """
    from diffred.core.device import default_device
    torch = _torch()
    if pool.views is None:
        raise ValueError("soft_mask_comparison needs a pool with augmented views (views > 0)")
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X, _, (mu, sd, absmean) = _pool_tensors(pool, device)
    V_all = _normalize(torch.as_tensor(pool.views, device=device))         # (P, V, D)
    P, V, D = V_all.shape
    settings = [("no mask", None, None)] + \
        [("soft mask (support)", s, None) for s in shrinks] + \
        [("hard top-k (support)", s, f) for s in shrinks for f in topk_fractions] + \
        ([(m, None, None) for m in REFERENCES] if references else [])
    rows = []
    for K in shots:
        try:
            ep = sample_episodes(pool.y, n_way, K, n_query, n_episodes, seed=seed + 100 + K,
                                 support_from=pool.has_views)
        except ValueError:
            continue
        accs = {(c, st): [] for c in classifiers for st in settings}
        for part in _chunks(n_episodes, episode_batch):
            sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
            S, Q = gather_episodes(X, sub, device)
            E = S.shape[0]
            s_idx = torch.as_tensor(sub.support, device=device)            # (E, N, K)
            aug = torch.cat([X[s_idx][:, :, :, None], V_all[s_idx]], 3)    # (E, N, K, V+1, D)
            aug = aug.reshape(E, n_way, K * (V + 1), D)
            s_mu, s_sd = aug.mean(2), aug.std(2, unbiased=False)
            s_abs = aug.abs().mean((1, 2))
            cls = torch.as_tensor(sub.classes, device=device)
            for st in settings:
                method, s, f = st
                if method == "no mask":
                    inp = (S, Q)
                elif method == "augmented support, no mask":
                    inp = (aug.reshape(E, -1, D), Q)
                elif method == "soft mask (oracle)":
                    m = soft_mask(importance(mu[cls], sd[cls]), absmean[cls].mean(1))[:, None]
                    inp = (S * m, Q * m)
                else:
                    imp = importance(s_mu, s_sd, s)
                    if method == "soft mask (support)":
                        m = soft_mask(imp, s_abs, s)[:, None]
                        inp = (S * m, Q * m)
                    else:
                        top = imp.argsort(-1, descending=True)[:, :_widths([f], D)[f]]
                        inp = (_take_columns(S, top), _take_columns(Q, top))
                for c in classifiers:
                    accs[(c, st)].append(episode_accuracy(*inp, n_way, c).cpu().numpy())
        for c in classifiers:
            base = np.concatenate(accs[(c, settings[0])])
            for st in settings:
                a = np.concatenate(accs[(c, st)])
                acc, ci = z_interval(a)
                gain, gain_ci = z_interval(a - base)
                rows.append({**_provenance(pool), "part": pool.meta.get("part", "all"),
                             "classifier": c, "n_way": n_way, "shots": K, "method": st[0],
                             "shrink": st[1], "topk_fraction": st[2], "accuracy": acc, "ci95": ci,
                             "gain": gain, "gain_ci95": gain_ci, "views": V,
                             "topk": None if st[2] is None else _widths([st[2]], D)[st[2]],
                             "n_episodes": n_episodes})
    return _frame(rows, pool)
