"""Few-shot transfer on frozen features: feature redundancy and soft masking (Luo et al. 2023).

An N-way K-shot *episode* draws N classes from a pool of cached features, K support and
Q query images per class; a classifier fitted on the support is scored on the queries.
Everything here is batched over episodes: E episodes are one tensor problem of shape
(E, N*K, D), solved on the GPU when there is one.

* :func:`load_pool` — the episode pool (cached features, plus augmented views of a subset).
* :func:`sample_episodes` — seeded episodes with disjoint support and query sets.
* :func:`importance` / :func:`two_way_importance` — per-dimension importance.
* :func:`episode_accuracy` — batched logistic regression (the probe engine's Nesterov
  solver, :func:`diffred.probe.fit_logreg`) or nearest centroid.
* :func:`fraction_curves`, :func:`confounders`, :func:`soft_mask_comparison` — the chapter's
  three experiments, each returning a tidy DataFrame, cached by content (pool features,
  settings, code: a warm rerun computes nothing); ``*_chart`` draw them.

Feature pipeline (as in the authors' precursor code, Channel_Importance_FSL): optionally keep
a subset of dimensions (hard mask) or multiply by ``importance / mean|x|`` (soft mask), then
L2-normalise each feature vector, then fit ``LogisticRegression(C=1)`` (no standardisation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import probe
from .cache import cached_table
from .errors import check_choice
from .probe import fit_logreg

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


def load_pool(model: str, dataset: str, *, split: str = "test", n_per_class: int = 100,
              seed: int = 0, resolution: int = 160, views: int = 4,
              view_candidates_per_class: int = 20, device: str | None = None,
              progress: bool = True) -> Pool:
    """Features of a seeded stratified subset, plus ``views`` augmented views (random resized
    crop + flip through the backbone) of ``view_candidates_per_class`` images per class — the
    images a soft-mask episode may draw its support from.  Both come from the shared cache.
    """
    from .datasets import load_dataset
    from .extract import features
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


def class_statistics(X, y, n_classes: int):
    """Per-class mean, std (population) and mean |x|: each (n_classes, D), from X (P, D)."""
    torch = _torch()
    onehot = torch.nn.functional.one_hot(y, n_classes).to(X.dtype)       # (P, C)
    count = onehot.sum(0).clamp_min(1)[:, None]
    mu = onehot.T @ X / count
    var = (onehot.T @ (X * X) / count - mu * mu).clamp_min(0)
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
    by :func:`diffred.probe.fit_logreg` (``solver="nesterov"``) on the span of each support
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


def mean_ci(acc) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 standard errors) of per-episode values."""
    acc = np.asarray(acc, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc)))


def _chunks(n, size):
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _provenance(pool: Pool) -> dict:
    return {k: pool.meta[k] for k in ("model", "weights", "dataset", "subset", "seed")}


def _pool_tensors(pool: Pool, device):
    torch = _torch()
    X = torch.as_tensor(pool.X, device=device)
    y = torch.as_tensor(pool.y, device=device)
    return X, y, class_statistics(X, y, pool.n_classes)


# --------------------------------------------------------------------------- experiment 1
@cached_table("fewshot", code=probe.CODE)
def fraction_curves(pool: Pool, shots=(1, 5, 10, 20),
                    fractions=(0.005, 0.01, 0.02, 0.05, 0.2, 1.0), *, n_way: int = 5, n_query: int = 15, n_episodes: int = 600,
                    seed: int = 0, classifier: str = "lr", episode_batch: int = 300,
                    device: str | None = None) -> pd.DataFrame:
    """Accuracy when keeping only the top fraction of dimensions, ranked per episode by oracle
    importance (class statistics of the episode's classes over the whole pool) or at random.

    Returns one row per (shots, fraction, ranking): acc, ci95, k, n_episodes + provenance.
    Shot counts the pool cannot serve (too few items per class) are skipped.
    """
    from .device import default_device
    torch = _torch()
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X, _, (mu, sd, _) = _pool_tensors(pool, device)
    D = X.shape[1]
    widths = sorted({max(1, int(round(f * D))) for f in fractions})
    rows = []
    for K in shots:
        try:
            ep = sample_episodes(pool.y, n_way, K, n_query, n_episodes, seed=seed + K)
        except ValueError:
            continue
        acc = {(k, r): [] for k in widths for r in RANKINGS}
        gen = torch.Generator(device="cpu").manual_seed(seed + K)
        for part in _chunks(n_episodes, episode_batch):
            sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
            S, Q = gather_episodes(X, sub, device)
            cls = torch.as_tensor(sub.classes, device=device)
            order = {"oracle": importance(mu[cls], sd[cls]).argsort(dim=-1, descending=True),
                     "random": torch.stack([torch.randperm(D, generator=gen)
                                            for _ in range(len(cls))]).to(device)}
            for k in widths:
                for r in RANKINGS:
                    if k == D and r == "random":
                        acc[(k, r)].append(acc[(k, "oracle")][-1])
                        continue
                    cols = order[r][:, :k]
                    acc[(k, r)].append(episode_accuracy(_take_columns(S, cols),
                                                        _take_columns(Q, cols), n_way,
                                                        classifier).cpu().numpy())
        for (k, r), parts in acc.items():
            m, ci = mean_ci(np.concatenate(parts))
            rows.append({**_provenance(pool), "classifier": classifier, "n_way": n_way,
                         "shots": K, "ranking": r, "k": k, "fraction": k / D, "acc": m,
                         "ci95": ci, "n_episodes": n_episodes})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- experiment 2
@cached_table("fewshot", code=probe.CODE)
def confounders(pool: Pool, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                n_episodes: int = 600, seed: int = 0, episode_batch: int = 50,
                device: str | None = None) -> pd.DataFrame:
    """Per dimension d of the L2-normalised features: within-class variance, distance between
    class centroids, and the change of nearest-centroid K-shot accuracy when d is dropped.

    Dropping d removes its term from every squared query-centroid distance, so all D drops
    are evaluated at once per episode batch: tensor (E, T, N, D).
    Returns one row per dimension (dim, within_var, centroid_dist, delta_acc, effect).
    """
    from .device import default_device
    torch = _torch()
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X = _normalize(torch.as_tensor(pool.X, device=device))
    y = torch.as_tensor(pool.y, device=device)
    mu, sd, _ = class_statistics(X, y, pool.n_classes)
    ep = sample_episodes(pool.y, n_way, k_shot, n_query, n_episodes, seed=seed)
    D = X.shape[1]
    gain = torch.zeros(D, device=device, dtype=torch.float64)
    flips = torch.zeros(D, device=device, dtype=torch.float64)
    n_total = 0
    for part in _chunks(n_episodes, episode_batch):
        sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
        S, Q = gather_episodes(X, sub, device)
        E = S.shape[0]
        centroids = S.view(E, n_way, k_shot, D).mean(2)                   # (E, N, D)
        terms = (Q[:, :, None, :] - centroids[:, None, :, :]) ** 2        # (E, T, N, D)
        dist = terms.sum(-1)                                              # (E, T, N)
        y_q = torch.arange(n_way, device=device).repeat_interleave(n_query)
        full = (dist.argmin(-1) == y_q).float()                           # (E, T)
        dropped = (dist[..., None] - terms).argmin(2) == y_q[None, :, None]   # (E, T, D)
        change = dropped.float() - full[..., None]
        gain += change.sum((0, 1)).double()
        flips += change.abs().sum((0, 1)).double()
        n_total += full.numel()
    delta = (gain / n_total).cpu().numpy()
    within_var = (sd ** 2).mean(0).cpu().numpy()
    centroid_dist = (mu.std(0, unbiased=False) * 2).cpu().numpy()
    # paired sign-test scale: net flips beyond 1.96 sqrt(#flips) are not chance
    margin = (1.96 * flips.sqrt() / n_total).cpu().numpy()
    effect = np.where(delta > margin, "dropping helps",
                      np.where(delta < -margin, "dropping hurts", "no clear effect"))
    return pd.DataFrame({**_provenance(pool), "dim": np.arange(D), "within_var": within_var,
                         "centroid_dist": centroid_dist, "delta_acc": delta, "effect": effect,
                         "shots": k_shot, "n_episodes": n_episodes})


# --------------------------------------------------------------------------- experiment 3
METHODS = ("no mask", "augmented support, no mask", "hard top-k (support)",
           "soft mask (support)", "soft mask (oracle)")


@cached_table("fewshot", code=probe.CODE)
def soft_mask_comparison(pool: Pool, shots=(1, 5), *, n_way: int = 5, n_query: int = 15,
                         n_episodes: int = 600, seed: int = 0, topk_fraction: float = 0.05,
                         shrink: float = 0.5, classifiers=CLASSIFIERS, episode_batch: int = 300,
                         device: str | None = None) -> pd.DataFrame:
    """No mask vs masks estimated from the support set alone (its K images x V augmented views
    plus originals): hard top-k and soft mask; plus two references — training on the augmented
    views without a mask, and the soft mask from oracle (whole-pool) statistics.

    All methods see the same episodes, so gains are paired: ``gain`` and ``gain_ci95`` are the
    mean and 95% CI of the per-episode difference to 'no mask'.  ``shrink`` regularises the
    support estimates (see :func:`importance`, :func:`soft_mask`); oracle ones use none.
    """
    from .device import default_device
    torch = _torch()
    if pool.views is None:
        raise ValueError("soft_mask_comparison needs a pool with augmented views (views > 0)")
    device = device or default_device()
    n_way = min(n_way, pool.n_classes)
    X, _, (mu, sd, absmean) = _pool_tensors(pool, device)
    V_all = torch.as_tensor(pool.views, device=device)                     # (P, V, D)
    P, V, D = V_all.shape
    k_top = max(1, int(round(topk_fraction * D)))
    rows = []
    for K in shots:
        try:
            ep = sample_episodes(pool.y, n_way, K, n_query, n_episodes, seed=seed + 100 + K,
                                 support_from=pool.has_views)
        except ValueError:
            continue
        accs = {(c, m): [] for c in classifiers for m in METHODS}
        for part in _chunks(n_episodes, episode_batch):
            sub = Episodes(ep.classes[part], ep.support[part], ep.query[part])
            S, Q = gather_episodes(X, sub, device)
            E = S.shape[0]
            s_idx = torch.as_tensor(sub.support, device=device)            # (E, N, K)
            aug = torch.cat([X[s_idx][:, :, :, None], V_all[s_idx]], 3)    # (E, N, K, V+1, D)
            aug = aug.reshape(E, n_way, K * (V + 1), D)
            s_mu, s_sd = aug.mean(2), aug.std(2, unbiased=False)
            s_imp = importance(s_mu, s_sd, shrink)
            support_scale = soft_mask(s_imp, aug.abs().mean((1, 2)), shrink)
            cls = torch.as_tensor(sub.classes, device=device)
            oracle_scale = soft_mask(importance(mu[cls], sd[cls]), absmean[cls].mean(1))
            top = s_imp.argsort(-1, descending=True)[:, :k_top]
            inputs = {
                "no mask": (S, Q),
                "augmented support, no mask": (aug.reshape(E, -1, D), Q),
                "hard top-k (support)": (_take_columns(S, top), _take_columns(Q, top)),
                "soft mask (support)": (S * support_scale[:, None], Q * support_scale[:, None]),
                "soft mask (oracle)": (S * oracle_scale[:, None], Q * oracle_scale[:, None]),
            }
            for c in classifiers:
                for m, (s, q) in inputs.items():
                    accs[(c, m)].append(episode_accuracy(s, q, n_way, c).cpu().numpy())
        for c in classifiers:
            base = np.concatenate(accs[(c, "no mask")])
            for m in METHODS:
                a = np.concatenate(accs[(c, m)])
                acc, ci = mean_ci(a)
                gain, gain_ci = mean_ci(a - base)
                rows.append({**_provenance(pool), "classifier": c, "n_way": n_way, "shots": K,
                             "method": m, "acc": acc, "ci95": ci, "gain": gain,
                             "gain_ci95": gain_ci, "views": V, "topk": k_top,
                             "n_episodes": n_episodes})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- summaries
def one_shot_summary(curves: pd.DataFrame, small_fraction_max: float = 0.05) -> pd.DataFrame:
    """Per backbone/dataset at the smallest shot count: accuracy with all dimensions vs the best
    oracle-ranked fraction <= ``small_fraction_max`` (and which fraction it was)."""
    rows = []
    for (model, dataset), g in curves[curves.ranking == "oracle"].groupby(["model", "dataset"]):
        g = g[g.shots == g.shots.min()]
        full = g[g.fraction == g.fraction.max()].iloc[0]
        small = g[g.fraction <= small_fraction_max]
        best = small.loc[small.acc.idxmax()]
        rows.append({"model": model, "dataset": dataset, "n_way": int(full.n_way),
                     "shots": int(full.shots), "acc_full": full.acc, "ci_full": full.ci95,
                     "best_fraction": best.fraction, "acc_best_small": best.acc,
                     "ci_best_small": best.ci95, "difference": best.acc - full.acc})
    return pd.DataFrame(rows)


def closing_summary(curves: pd.DataFrame, masks: pd.DataFrame) -> pd.DataFrame:
    """Per backbone/dataset: 1-shot accuracy with all dimensions vs the best small oracle
    fraction, and the soft mask's (support-estimated) paired gain with its 95% CI, in points."""
    summary = one_shot_summary(curves)
    sm = masks[(masks.method == "soft mask (support)") & (masks.shots == masks.shots.min())]
    gains = sm.pivot_table(index=["model", "dataset"], columns="classifier",
                           values=["gain", "gain_ci95"]).reset_index()
    gains.columns = ["model", "dataset"] + [f"{a}_{c}" for a, c in gains.columns[2:]]
    out = summary.merge(gains, on=["model", "dataset"], how="left")
    table = pd.DataFrame({
        "backbone": out.model, "dataset": out.dataset,
        "way-shot": out.n_way.astype(str) + "-way " + out.shots.astype(str) + "-shot",
        "all dims": [f"{100 * a:.1f} ± {100 * c:.1f}" for a, c in zip(out.acc_full, out.ci_full)],
        "best small fraction": [f"{100 * a:.1f} ± {100 * c:.1f} at {100 * f:.1f}%" for a, c, f in
                                zip(out.acc_best_small, out.ci_best_small, out.best_fraction)]})
    for c in ("lr", "nc"):
        if f"gain_{c}" in out:
            table[f"soft-mask gain {c.upper()}"] = [
                f"{100 * g:+.2f} ± {100 * ci:.2f}" for g, ci in zip(out[f"gain_{c}"],
                                                                  out[f"gain_ci95_{c}"])]
    return table


def paper_vs_run(curves: pd.DataFrame, masks: pd.DataFrame) -> pd.DataFrame:
    """The paper's qualitative claims (literature constants) beside what this run measured."""
    summary = one_shot_summary(curves)
    n_recover = int((summary.difference >= -summary.ci_full).sum())
    oracle = curves[curves.ranking == "oracle"]
    keys = ["model", "dataset", "shots"]
    full = oracle[oracle.fraction == oracle.fraction.max()].set_index(keys).acc
    fade = (oracle.groupby(keys).acc.max() - full).groupby("shots").mean()
    sm = masks[(masks.method == "soft mask (support)") & (masks.classifier == "lr")]
    sm1 = sm[sm.shots == sm.shots.min()]
    return pd.DataFrame([
        {"claim (paper)": "5-way 1-shot: ~1% most important dims recover or beat the full "
                          "representation (oracle importance)",
         "this run": f"{n_recover}/{len(summary)} backbone/dataset pairs: best fraction <= 5% "
                     f"within CI of or above full (mean difference "
                     f"{100 * summary.difference.mean():+.1f} points)"},
        {"claim (paper)": "redundancy fades as shots grow",
         "this run": "best sub-set gain over full, averaged over pairs: " + ", ".join(
             f"K={int(k)}: {100 * v:+.1f}" for k, v in fade.items()) + " points"},
        {"claim (paper)": "soft mask from (augmented) support images improves few-shot LR",
         "this run": f"1-shot LR gain {100 * sm1.gain.mean():+.2f} points on average; "
                     f"{int((sm1.gain - sm1.gain_ci95 > 0).sum())}/{len(sm1)} pairs "
                     f"significantly positive, {int((sm1.gain + sm1.gain_ci95 < 0).sum())} "
                     f"significantly negative"},
    ])


# --------------------------------------------------------------------------- charts
def fraction_chart(curves: pd.DataFrame):
    """Accuracy vs fraction of dimensions kept (log x), one colour per K, oracle solid and
    random dashed, faceted by dataset (rows) and backbone (columns)."""
    import altair as alt
    data = curves.assign(acc_pct=100 * curves.acc, lo=100 * (curves.acc - curves.ci95),
                         hi=100 * (curves.acc + curves.ci95), K=curves.shots.astype(str))
    base = alt.Chart(data).encode(
        x=alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of dimensions kept"),
        color=alt.Color("K:N", title="shots K", sort=sorted(data.K.unique(), key=int)),
        strokeDash=alt.StrokeDash("ranking:N", title="ranking"))
    lines = base.mark_line(point=True).encode(
        y=alt.Y("acc_pct:Q", title="accuracy (%)", scale=alt.Scale(zero=False)),
        tooltip=["model", "dataset", "shots", "ranking", "k",
                 alt.Tooltip("acc_pct:Q", format=".1f"), alt.Tooltip("ci95:Q", format=".3f")])
    band = base.mark_errorband().encode(y=alt.Y("lo:Q", title="accuracy (%)"), y2="hi:Q")
    return (band + lines).properties(width=200, height=140).facet(
        row=alt.Row("dataset:N", title=None), column=alt.Column("model:N", title=None)
    ).resolve_scale(y="independent")


def confounder_chart(conf: pd.DataFrame):
    """Within-class variance vs centroid distance per dimension, coloured by the effect of
    dropping it on nearest-centroid accuracy."""
    import altair as alt
    title = (f"{conf.model.iloc[0]} on {conf.dataset.iloc[0]}, {int(conf.shots.iloc[0])}-shot")
    return alt.Chart(conf).mark_circle(size=14, opacity=0.6).encode(
        x=alt.X("within_var:Q", scale=alt.Scale(type="log"), title="within-class variance"),
        y=alt.Y("centroid_dist:Q", scale=alt.Scale(type="log"),
                title="spread of class centroids (2 std)"),
        color=alt.Color("effect:N", scale=alt.Scale(
            domain=["dropping helps", "no clear effect", "dropping hurts"],
            range=["#d62728", "#bbbbbb", "#1f77b4"])),
        tooltip=["dim", alt.Tooltip("delta_acc:Q", format=".5f"), "within_var", "centroid_dist"],
    ).properties(width=420, height=300, title=title)


def gain_chart(masks: pd.DataFrame):
    """Paired gain over 'no mask' (points, 95% CI) per method, faceted by classifier and K."""
    import altair as alt
    data = masks[masks.method != "no mask"].assign(
        pair=lambda d: d.model + " / " + d.dataset, gain_pts=lambda d: 100 * d.gain,
        lo=lambda d: 100 * (d.gain - d.gain_ci95), hi=lambda d: 100 * (d.gain + d.gain_ci95))
    base = alt.Chart(data).encode(y=alt.Y("pair:N", title=None),
                                  color=alt.Color("method:N", sort=list(METHODS[1:]),
                                                  legend=alt.Legend(orient="bottom", columns=2)),
                                  yOffset=alt.YOffset("method:N", sort=list(METHODS[1:])))
    bars = base.mark_point(filled=True).encode(
        x=alt.X("gain_pts:Q", title="gain over no mask (accuracy points)"),
        tooltip=["model", "dataset", "method", "shots", alt.Tooltip("gain_pts:Q", format=".2f")])
    err = base.mark_rule().encode(x="lo:Q", x2="hi:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(color="black").encode(x="x:Q")
    return (err + bars + zero).properties(width=200, height=alt.Step(7)).facet(
        column=alt.Column("classifier:N"), row=alt.Row("shots:N", title="shots K"))


def mask_table(masks: pd.DataFrame) -> pd.DataFrame:
    """Wide table: 'acc ± ci (gain ± ci)' in points, one row per backbone/dataset/classifier/K."""
    cell = masks.apply(lambda r: f"{100 * r.acc:.1f} ± {100 * r.ci95:.1f}" + (
        "" if r.method == "no mask" else f" ({100 * r.gain:+.1f} ± {100 * r.gain_ci95:.1f})"),
        axis=1)
    wide = masks.assign(cell=cell).pivot_table(
        index=["model", "dataset", "classifier", "shots"], columns="method", values="cell",
        aggfunc="first")
    return wide[[m for m in METHODS if m in wide.columns]]
