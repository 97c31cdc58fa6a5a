"""Diffuse redundancy (Nanda et al., NeurIPS 2023): how much of a layer does a task need?

A linear probe is trained on a *random subset* of a layer's neurons and compared with a probe
on the whole layer.  A layer is *diffusely redundant* when small random subsets already reach
most of the full accuracy.  Baselines replace the random subset by the top-k / bottom-k
principal components or by a random projection to k dimensions.

    DR(δ) = 1 − f*,   f* = the grid fraction whose mean accuracy ratio acc(f) / acc(1) is
                      closest to δ (the authors' definition; the paper tabulates δ = 0.9).

Verbs: :func:`sweep` (all probes of one layer, batched through :func:`diffred.probe_accuracy`),
:func:`run_sweeps` (backbones x datasets x layers, from the shared feature cache),
:func:`accuracy_curve`, :func:`dr_table`, :func:`pareto_frontier`, :func:`class_cost`,
:func:`subset_cka`, :func:`paper_comparison`, and the ``*_chart`` builders (Altair).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import check_choice

CHAPTER = "01_diffuse_redundancy"

#: the authors' fraction grid (``randperm(d)[:int(frac * d)]``, 5 seeds each)
PAPER_FRACTIONS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5,
                   0.8, 0.9, 1.0)
METHODS = ("random", "pca_top", "pca_bottom", "randproj_uniform", "randproj_gaussian")
#: subset sizes (neurons) of the paper's CKA curve for ResNet-50 (2048-d penultimate)
PAPER_CKA_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)

#: the paper's numbers (literature constants, not measured here)
PAPER = {
    "resnet50_cifar10_accuracy": {1.0: .891, 0.01: .371, 0.05: .695, 0.1: .779, 0.2: .832,
                                  0.5: .874},
    "resnet50_cifar100_accuracy": {1.0: .663, 0.2: .518},
    "vit_s16_cifar10_accuracy": {1.0: .959, 0.2: .904},
    "resnet50_cifar10_cka": dict(zip(PAPER_CKA_SIZES,
                                     (.260, .340, .448, .558, .697, .810, .904, .963))),
    "resnet18_dr90": {"cifar10": 0.80, "oxford_pets": 0.90},
}


# --------------------------------------------------------------------------- subsets
def subset_width(dim: int, fraction: float) -> int:
    """Number of neurons kept: ``int(fraction * dim)``, at least 1 (as the authors)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return max(1, int(fraction * dim))


def random_neurons(dim: int, fraction: float, seed: int) -> np.ndarray:
    """Indices (k,) of a uniformly random neuron subset: ``randperm(dim)[:k]`` with torch seed."""
    import torch
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(dim, generator=gen)[:subset_width(dim, fraction)].numpy()


def pca_basis(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and principal directions (D, r) of X (N, D), by decreasing variance.

    Only the r directions with non-negligible variance are kept (r <= min(N - 1, D)), so the
    "bottom" components are the least-variance directions the data actually spans.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    rank = int((s > s[0] * 1e-6).sum()) if s.size and s[0] > 0 else 0
    return mean.astype(np.float32), vt[:rank].T.astype(np.float32)


def random_projection(dim: int, k: int, seed: int, kind: str = "uniform") -> np.ndarray:
    """A (dim, k) random projection matrix.

    ``uniform``: entries U[0, 1) with L2-normalised columns (the authors' baseline);
    ``gaussian``: entries N(0, 1/k) (Johnson–Lindenstrauss).
    """
    check_choice("random projection kind", kind, ("uniform", "gaussian"))
    rng = np.random.default_rng([int(seed), dim, k])
    if kind == "uniform":
        P = rng.random((dim, k))
        P /= np.linalg.norm(P, axis=0, keepdims=True)
    else:
        P = rng.normal(0.0, 1.0 / np.sqrt(k), size=(dim, k))
    return P.astype(np.float32)


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """runs: one row per probe (method, fraction, k, seed, accuracy, full_accuracy, ...);
    per_class: one row per probe x class (recall of that class)."""
    runs: pd.DataFrame
    per_class: pd.DataFrame


def sweep(X_train, y_train, X_test, y_test, *, fractions=PAPER_FRACTIONS, seeds=range(5),
          methods=("random",), classes=None, C: float = 1.0, max_iter: int = 300,
          device: str | None = None) -> SweepResult:
    """Probe every (method, fraction, seed) view of one layer, batched.

    X_train (N, D), X_test (M, D) float; y (N,), (M,) int.  ``random`` and the random
    projections use every seed; PCA top / bottom are deterministic (seed 0 only).  The full
    layer is always probed once and stored as ``full_accuracy`` on every row.
    """
    from .probe import ProbeResult, probe_accuracy
    for m in methods:
        check_choice("method", m, METHODS)
    fractions = [float(f) for f in fractions]
    for f in fractions:
        subset_width(1, f)  # validates
    seeds = [int(s) for s in seeds]
    Xtr = np.asarray(X_train, dtype=np.float32)
    Xte = np.asarray(X_test, dtype=np.float32)
    y_train, y_test = np.array(y_train, dtype=np.int64), np.array(y_test, dtype=np.int64)
    D = Xtr.shape[1]
    kw = dict(C=C, max_iter=max_iter, device=device)
    labels, results = [], []

    def run(rows, **views):
        if rows:
            labels.extend(rows)
            results.append(probe_accuracy(Xtr, y_train, Xte, y_test, **views, **kw))

    run([("full", 1.0, 0)], columns=[np.arange(D)])
    if "random" in methods:
        # a subset of all D neurons is a permutation of the layer: the full probe, not refitted
        rows = [("random", f, s) for f in fractions for s in seeds if subset_width(D, f) < D]
        run(rows, columns=[random_neurons(D, f, s) for _, f, s in rows])
        whole = [("random", f, s) for f in fractions for s in seeds if subset_width(D, f) == D]
        if whole:
            labels.extend(whole)
            results.append(ProbeResult(np.repeat(results[0].accuracy, len(whole)),
                                       np.repeat(results[0].per_class, len(whole), axis=0),
                                       np.repeat(results[0].k, len(whole))))
    pcs = [m for m in methods if m.startswith("pca")]
    if pcs:
        mean, V = pca_basis(Xtr)
        r = V.shape[1]
        Ptr, Pte = (Xtr - mean) @ V, (Xte - mean) @ V       # (N, r), (M, r)
        rows = [(m, f, 0) for m in pcs for f in fractions]
        cols = [np.arange(min(subset_width(D, f), r)) if m == "pca_top"
                else np.arange(r - min(subset_width(D, f), r), r) for m, f, _ in rows]
        labels.extend(rows)
        results.append(probe_accuracy(Ptr, y_train, Pte, y_test, columns=cols, **kw))
    rps = [m for m in methods if m.startswith("randproj")]
    rows = [(m, f, s) for m in rps for f in fractions for s in seeds]
    run(rows, projections=[random_projection(D, subset_width(D, f), s, m.split("_")[1])
                           for m, f, s in rows])

    acc = np.concatenate([r.accuracy for r in results])
    per_class = np.concatenate([r.per_class for r in results])
    k = np.concatenate([r.k for r in results])
    runs = pd.DataFrame(labels, columns=["method", "fraction", "seed"])
    runs["k"], runs["dim"], runs["accuracy"] = k, D, acc
    runs["full_accuracy"] = acc[0]
    runs["mean_class_accuracy"] = np.nanmean(per_class, axis=1)
    runs["worst_class_accuracy"] = np.nanmin(per_class, axis=1)
    names = list(classes) if classes is not None else list(range(per_class.shape[1]))
    pc = runs[["method", "fraction", "seed", "k"]].loc[
        np.repeat(runs.index, per_class.shape[1])].reset_index(drop=True)
    pc["class"] = np.tile(names[:per_class.shape[1]], len(runs))
    pc["accuracy"] = per_class.reshape(-1)
    return SweepResult(runs, pc)


def cached_sweep(spec: dict, compute) -> SweepResult:
    """A sweep's tables from the result cache (:func:`diffred.cache.cached_tables`), or
    computed and stored.

    ``spec`` names the cached features (their content keys) and every probe setting; the key
    also holds the code version of this module and of the probe engine, so a changed solver
    never serves a stale sweep."""
    import sys

    from . import probe
    from .cache import cached_tables

    def tables():
        start = time.perf_counter()
        res = compute()
        res.runs["probe_seconds"] = time.perf_counter() - start
        return {"runs": res.runs, "per_class": res.per_class}
    out = cached_tables("sweep", spec, tables, code=(sys.modules[__name__], *probe.CODE))
    return SweepResult(out["runs"], out["per_class"])


def _subset_str(meta: dict) -> str:
    return json.dumps(meta.get("subset", {}), sort_keys=True)


def run_sweeps(models, datasets, *, layers=("penultimate",), extract_layers=None,
               methods=("random",), fractions=PAPER_FRACTIONS, seeds=range(5),
               train_subset: dict | None = None, test_subset: dict | None = None,
               resolution: int | None = None, pooling: str = "mean", C: float = 1.0,
               max_iter: int = 300, device: str | None = None,
               progress: bool = False) -> SweepResult:
    """:func:`sweep` for every backbone x dataset x layer, on cached features.

    ``layers``: vision module names / 'penultimate'; for text backbones 'penultimate' means
    the last hidden state (mean-pooled by default).  ``extract_layers``: the layers to pull
    from the one forward pass on a cache miss (so later chapters' layers come for free).
    Rows carry provenance: model, weights hash, dataset, layer, subsets, code version, and
    ``probe_seconds`` (wall time of that layer's whole sweep when it was fitted).  Sweeps are
    cached (:func:`cached_sweep`), so a warm rerun fits no probe.
    """
    from ._version import __version__
    from .extract import features, text_num_layers
    from .models import model_kind
    train_subset = dict(train_subset or {})
    test_subset = dict(test_subset or {})
    runs, per_class = [], []
    for model in models:
        kind = model_kind(model)
        for dataset in datasets:
            if kind == "text":
                last = text_num_layers(model)
                want = [last if lay == "penultimate" else lay for lay in layers]
                get = {lay: want[i] for i, lay in enumerate(layers)}
                opts = dict(layer=sorted(set(want)), pooling=pooling)
            else:
                get = {lay: lay for lay in layers}
                opts = dict(layer=list(dict.fromkeys([*(extract_layers or []), *layers])),
                            resolution=resolution)
            tr = features(model, dataset, "train", **train_subset, progress=progress, **opts)
            te = features(model, dataset, "test", **test_subset, progress=progress, **opts)
            for lay, key in get.items():
                spec = {"train": tr[key].meta["key"], "test": te[key].meta["key"],
                        "fractions": [float(f) for f in fractions], "seeds": list(map(int, seeds)),
                        "methods": list(methods), "C": C, "max_iter": max_iter}
                res = cached_sweep(spec, lambda: sweep(
                    tr[key].X, tr[key].y, te[key].X, te[key].y, fractions=fractions, seeds=seeds,
                    methods=methods, classes=tr[key].classes, C=C, max_iter=max_iter,
                    device=device))
                meta = tr[key].meta
                prov = {"model": model, "weights": meta["weights"], "dataset": dataset,
                        "layer": str(lay), "train_subset": _subset_str(meta),
                        "test_subset": _subset_str(te[key].meta), "n_train": len(tr[key].y),
                        "n_test": len(te[key].y), "code_version": __version__}
                runs.append(res.runs.assign(**prov))
                per_class.append(res.per_class.assign(**prov))
    return SweepResult(pd.concat(runs, ignore_index=True),
                       pd.concat(per_class, ignore_index=True))


# --------------------------------------------------------------------------- summaries
GROUP = ["model", "dataset", "layer", "method"]


def accuracy_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean / std over seeds per (model, dataset, layer, method, fraction), with the
    accuracy ratio to the full layer (``ratio``) and the full layer as ``method='full'``."""
    keys = [c for c in GROUP if c in runs.columns]
    curve = (runs.groupby(keys + ["fraction"], sort=True)
             .agg(k=("k", "first"), dim=("dim", "first"), accuracy=("accuracy", "mean"),
                  accuracy_std=("accuracy", "std"), seeds=("seed", "nunique"),
                  full_accuracy=("full_accuracy", "first"))
             .reset_index())
    curve["accuracy_std"] = curve["accuracy_std"].fillna(0.0)
    curve["ratio"] = curve["accuracy"] / curve["full_accuracy"]
    return curve


def diffuse_redundancy(fractions, ratios, delta: float = 0.9) -> float:
    """DR(δ) = 1 − f*, f* the fraction whose accuracy ratio is closest to δ (first on ties)."""
    fractions, ratios = np.asarray(fractions, float), np.asarray(ratios, float)
    if fractions.shape != ratios.shape or fractions.size == 0:
        raise ValueError("fractions and ratios must be non-empty and of the same length")
    order = np.argsort(fractions, kind="stable")
    best = order[np.argmin(np.abs(ratios[order] - delta))]
    return float(1.0 - fractions[best])


def dr_table(curve: pd.DataFrame, deltas=(0.8, 0.9, 0.95), method: str = "random"
             ) -> pd.DataFrame:
    """DR(δ) per (model, dataset, layer) for each δ (columns ``DR(0.9)`` ...) plus the full
    accuracy and the gap at 20% of neurons (1 − ratio at fraction 0.2, if on the grid)."""
    keys = [c for c in GROUP if c in curve.columns and c != "method"]
    rows = []
    for key, g in curve[curve["method"] == method].groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["dim"] = int(g["dim"].iloc[0])
        row["full_accuracy"] = float(g["full_accuracy"].iloc[0])
        for d in deltas:
            row[f"DR({d:g})"] = diffuse_redundancy(g["fraction"], g["ratio"], d)
        at20 = g[np.isclose(g["fraction"], 0.2)]
        row["gap_at_20pct"] = float(1 - at20["ratio"].iloc[0]) if len(at20) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_frontier(cost, value) -> np.ndarray:
    """Boolean mask (P,) of the non-dominated points: no other point has cost <= and
    value >= with one strict (here cost = neuron fraction, value = accuracy ratio)."""
    cost, value = np.asarray(cost, float), np.asarray(value, float)
    order = np.lexsort((-value, cost))          # cheapest first, best value first on ties
    mask = np.zeros(cost.size, bool)
    best = -np.inf
    for i in order:
        if value[i] > best:
            mask[i], best = True, value[i]
    return mask


def frontier_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, every (model, layer, method, fraction) point with ``on_frontier``: is it
    Pareto-optimal for that task in (fraction ↓, accuracy ratio ↑)?"""
    pts = curve.copy()
    pts["on_frontier"] = False
    for _, g in pts.groupby("dataset"):
        pts.loc[g.index, "on_frontier"] = pareto_frontier(g["fraction"], g["ratio"])
    return pts


def class_cost(per_class: pd.DataFrame, method: str = "random") -> pd.DataFrame:
    """How unevenly a subset costs the classes: per (model, dataset, layer, fraction), the
    accuracy drop versus the full layer of the mean class and of the worst-hit class
    (averaged over seeds), and which class that usually is."""
    keys = [c for c in ("model", "dataset", "layer") if c in per_class.columns]
    full = per_class[per_class["method"] == "full"][keys + ["class", "accuracy"]]
    sub = per_class[per_class["method"] == method].merge(full, on=keys + ["class"],
                                                         suffixes=("", "_full"))
    sub["drop"] = sub["accuracy_full"] - sub["accuracy"]
    per_seed = sub.groupby(keys + ["fraction", "seed"]).agg(
        mean_drop=("drop", "mean"), worst_drop=("drop", "max"),
        worst_class=("drop", lambda d: sub.loc[d.idxmax(), "class"]))
    out = per_seed.groupby(keys + ["fraction"]).agg(
        mean_class_drop=("mean_drop", "mean"), worst_class_drop=("worst_drop", "mean"),
        worst_class=("worst_class", lambda s: s.mode().iloc[0])).reset_index()
    return out


def subset_cka(X, sizes=PAPER_CKA_SIZES, seeds=range(5), debiased: bool = True
               ) -> pd.DataFrame:
    """CKA(random subset of ``size`` neurons, full layer) on the rows of X (N, D).

    Sizes larger than D are skipped; returns rows (size, fraction, seed, cka)."""
    from .similarity import linear_cka
    X = np.asarray(X, dtype=np.float64)
    D = X.shape[1]
    rows = []
    for size in [s for s in sizes if s <= D]:
        for seed in seeds:
            idx = random_neurons(D, size / D, seed)
            rows.append((size, size / D, int(seed), linear_cka(X[:, idx], X, debiased=debiased)))
    return pd.DataFrame(rows, columns=["size", "fraction", "seed", "cka"])


def paper_comparison(curve: pd.DataFrame, cka: pd.DataFrame | None = None,
                     dataset: str = "cifar10") -> pd.DataFrame:
    """The paper's headline numbers next to this run's (random subsets, penultimate layer).

    Columns: quantity, paper (literature constant), paper_model, model, this_run, difference.
    Ratios (accuracy / full accuracy) are compared as well, since the backbones differ."""
    cur = curve[(curve["method"] == "random") & (curve["dataset"] == dataset)
                & (curve["layer"] == "penultimate")]
    paper_acc = PAPER["resnet50_cifar10_accuracy"]
    rows = []
    for model, g in cur.groupby("model", sort=False):
        at = g.set_index("fraction")
        for f, p in paper_acc.items():
            if f in at.index:
                rows.append((f"CIFAR-10 accuracy, {f:.0%} of neurons", p, "ResNet-50", model,
                             at.loc[f, "accuracy"]))
        if 0.2 in at.index:
            rows.append(("CIFAR-10 accuracy ratio at 20%", paper_acc[0.2] / paper_acc[1.0],
                         "ResNet-50", model, at.loc[0.2, "ratio"]))
            vit = PAPER["vit_s16_cifar10_accuracy"]
            rows.append(("CIFAR-10 accuracy ratio at 20%", vit[0.2] / vit[1.0], "ViT-S/16",
                         model, at.loc[0.2, "ratio"]))
        rows.append(("DR(0.9) on CIFAR-10", PAPER["resnet18_dr90"]["cifar10"], "ResNet-18",
                     model, diffuse_redundancy(g["fraction"], g["ratio"], 0.9)))
        if cka is not None and "model" in cka.columns:
            c = cka[(cka["model"] == model) & (cka["dataset"] == dataset)]
            c = c.groupby("size")["cka"].mean()
            for size, p in PAPER["resnet50_cifar10_cka"].items():
                if size in c.index:
                    rows.append((f"CKA(subset, full), {size} neurons", p, "ResNet-50 (of 2048)",
                                 model, c.loc[size]))
    out = pd.DataFrame(rows, columns=["quantity", "paper", "paper_model", "model", "this_run"])
    out["difference"] = out["this_run"] - out["paper"]
    return out


# --------------------------------------------------------------------------- charts
def _alt():
    import altair as alt
    return alt


def accuracy_chart(curve: pd.DataFrame, facet_row: str = "model", facet_column: str = "dataset"):
    """Accuracy vs neuron fraction (log x), one line per method, ±1 std band over seeds."""
    alt = _alt()
    data = curve[curve["method"] != "full"].assign(
        lo=lambda d: d["accuracy"] - d["accuracy_std"], hi=lambda d: d["accuracy"] + d["accuracy_std"])
    x = alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of neurons")
    color = alt.Color("method:N", title="subset / baseline", legend=alt.Legend(orient="bottom"))
    band = alt.Chart().mark_area(opacity=0.25).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    line = alt.Chart().mark_line(point=True).encode(
        x=x, y=alt.Y("accuracy:Q", title="test accuracy"), color=color,
        tooltip=["model", "dataset", "method", "fraction", "k", alt.Tooltip("accuracy", format=".3f")])
    # narrow panels: four datasets side by side fit the book's content column
    return alt.layer(band, line, data=data).properties(width=125, height=115).facet(
        row=alt.Row(f"{facet_row}:N", title=None),
        column=alt.Column(f"{facet_column}:N", title=None))


def cka_chart(cka: pd.DataFrame):
    """Unbiased CKA(random subset, full layer) vs subset size, with the paper's ResNet-50."""
    alt = _alt()
    ours = cka.groupby(["model", "size"])["cka"].agg(["mean", "std"]).reset_index()
    ours["series"] = ours["model"] + " (this run)"
    paper = pd.DataFrame({"size": list(PAPER["resnet50_cifar10_cka"]),
                          "mean": list(PAPER["resnet50_cifar10_cka"].values()), "std": 0.0,
                          "series": "ResNet-50 (paper)"})
    data = pd.concat([ours, paper], ignore_index=True)
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("size:Q", scale=alt.Scale(type="log", base=2), title="neurons in random subset"),
        y=alt.Y("mean:Q", title="unbiased linear CKA with full layer"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        strokeDash=alt.condition("datum.series == 'ResNet-50 (paper)'", alt.value([4, 3]),
                                 alt.value([1, 0])),
        tooltip=["series", "size", alt.Tooltip("mean", format=".3f")],
    ).properties(width=440, height=240, title="CKA of random subsets with the full layer (CIFAR-10)")


def pareto_chart(points: pd.DataFrame):
    """Accuracy ratio vs fraction for every task; the per-task Pareto frontier as a line."""
    alt = _alt()
    data = points[points["method"] != "full"]
    x = alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of neurons (or dims)")
    y = alt.Y("ratio:Q", title="accuracy / full-layer accuracy", scale=alt.Scale(zero=False))
    dots = alt.Chart(data).mark_point(opacity=0.35, size=25).encode(
        x=x, y=y, color=alt.Color("dataset:N"), shape="method:N",
        tooltip=["dataset", "model", "layer", "method", "fraction", alt.Tooltip("ratio", format=".3f")])
    front = alt.Chart(data[data["on_frontier"]]).mark_line(strokeWidth=2.5).encode(
        x=x, y=y, color="dataset:N")
    return (dots + front).properties(width=480, height=300,
                                     title="Redundancy–performance frontier per task")


def class_cost_chart(cost: pd.DataFrame):
    """Mean-class vs worst-class accuracy drop as neurons are removed."""
    alt = _alt()
    data = cost.melt(id_vars=["model", "dataset", "layer", "fraction"],
                     value_vars=["mean_class_drop", "worst_class_drop"], var_name="which",
                     value_name="drop")
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of neurons"),
        y=alt.Y("drop:Q", title="accuracy drop vs full layer"),
        color=alt.Color("which:N", title=None, legend=alt.Legend(orient="bottom")),
        strokeDash=alt.StrokeDash("model:N", legend=alt.Legend(orient="bottom")),
        tooltip=["model", "dataset", "which", "fraction", alt.Tooltip("drop", format=".3f")],
    ).properties(width=125, height=120).facet(column=alt.Column("dataset:N", title=None))


def layer_chart(dr: pd.DataFrame, delta: float = 0.9):
    """DR(δ) of intermediate stages vs the penultimate layer, per dataset."""
    alt = _alt()
    return alt.Chart(dr).mark_bar().encode(
        x=alt.X("layer:N", sort=None, title=None), y=alt.Y(f"DR({delta:g}):Q", title=f"DR({delta:g})"),
        color="layer:N", column="dataset:N",
        tooltip=["model", "layer", "dim", f"DR({delta:g})", alt.Tooltip("full_accuracy", format=".3f")],
    ).properties(width=110, height=150)


def closing_note(dr: pd.DataFrame, dataset: str = "cifar10") -> str:
    """Markdown summary: the DR(0.9) table (penultimate, random subsets) and, per backbone,
    the accuracy gap at 20% of neurons on ``dataset`` next to the paper's "within 5%"."""
    pen = dr[dr["layer"] == "penultimate"]
    table = pen.pivot_table(index="model", columns="dataset", values="DR(0.9)")
    lines = ["**DR(0.9), random neuron subsets of the last layer (this run)**", "",
             "| model | " + " | ".join(table.columns) + " |",
             "|---|" + "---|" * len(table.columns)]
    lines += [f"| {m} | " + " | ".join("–" if np.isnan(v) else f"{v:.2f}" for v in row) + " |"
              for m, row in table.iterrows()]
    lines += ["", f"**Gap at 20% of neurons on {dataset}** (paper: within 5% of the full layer)",
              ""]
    for _, row in pen[pen["dataset"] == dataset].iterrows():
        verdict = "within" if row["gap_at_20pct"] <= 0.05 else "outside"
        lines.append(f"- {row['model']}: {100 * row['gap_at_20pct']:.1f}% below the full layer "
                     f"({verdict} the paper's 5%; full accuracy {row['full_accuracy']:.3f})")
    return "\n".join(lines)
