"""Neuron-level redundancy in transformers (Dalvi et al., EMNLP 2020).

General redundancy
    :func:`layer_similarity` — linear CKA between every pair of layers;
    :func:`~diffred.core.similarity.neuron_correlation` — Pearson ρ between all neurons, streamed
    over the row chunks of :func:`layer_chunks`; :func:`~diffred.core.similarity.correlation_linkage`
    + :func:`clusters_at` — average-linkage clustering on 1 − |ρ|, cut at a threshold c;
    :func:`cluster_representatives` — one random (seeded) neuron per cluster, as the authors'
    ``extract_independent_neurons``; :func:`redundancy_curve` — % of neurons redundant vs c;
    :func:`cluster_sweep` — the same on a task's data with the probe retrained at every c.
Task-specific pipeline (:func:`task_redundancy`)
    oracle probe on all layers → :class:`LayerSelector` (lowest layer l whose prefix 0..l
    keeps ≥ (1 − δ_L%) of the oracle's dev accuracy) → correlation clustering of the kept
    neurons → elastic-net ranking (:func:`rank_neurons`, the authors' objective) →
    :func:`minimal_neuron_set` (the smallest top-k% of the ranking keeping ≥ (1 − δ_N%) of the
    dev accuracy), with a random-selection baseline, :func:`probe_cost` for the efficiency
    comparison and the noise of every row (:func:`signal_check`, the dev standard error);
    :func:`usable` / :func:`usable_sweep` — the rows with usable signal, which every aggregate
    keeps.
The chapter's cached verbs over models and tasks: :mod:`diffred.studies.neurons.runs`; the
paper's numbers and the rules that set them beside this run's: :mod:`diffred.studies.neurons.paper`.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diffred.core.errors import check_choice
from diffred.core.similarity import correlation_linkage, linear_cka, neuron_correlation
from diffred.core.stats import t_interval

#: the authors' search grid for the minimal neuron set (fractions of ALL neurons of the model)
#: and their δ pairs (δ_L %, δ_N %); sources: :data:`diffred.studies.neurons.paper.PROTOCOL`.
#: Their values stay here, where the pipeline reads them: they are part of its code version.
PERCENTAGES = (0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07,
               0.08, 0.09, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60, 0.70,
               0.80, 0.90)
DELTAS = ((1, 1), (2, 1), (3, 1))
TOKEN_TASKS = ("ud_pos", "conll2000_chunk", "conll2003_ner")
SENTENCE_TASKS = ("sst2", "mrpc", "cola", "rte", "trec")


# ============================================================================ general redundancy
def layer_similarity(layers: Sequence[np.ndarray], max_rows: int = 20000, seed: int = 0
                     ) -> pd.DataFrame:
    """Linear CKA between every pair of layers.

    layers: L+1 arrays (N, D) of the same N rows (memmaps are fine; at most ``max_rows``
    seeded rows are read).  Returns a long table: layer_a, layer_b, cka.
    """
    n = len(layers[0])
    rows = np.sort(np.random.default_rng(seed).permutation(n)[:max_rows])
    reps = [np.asarray(X[rows], dtype=np.float32) for X in layers]
    out = []
    for a in range(len(reps)):
        for b in range(a, len(reps)):
            cka = 1.0 if a == b else linear_cka(reps[a], reps[b])
            out += [(a, b, cka)] + ([(b, a, cka)] if a != b else [])
    return pd.DataFrame(out, columns=["layer_a", "layer_b", "cka"])


def layer_chunks(layers: Sequence[np.ndarray], chunk_rows: int = 4096,
                 rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield float32 blocks (n, sum of D_l) of the concatenated layers, ``chunk_rows`` at a time.

    layers: arrays (N, D_l) — typically memory-mapped cache entries, read layer by layer so
    that only one chunk of rows is ever in memory; rows: optional row subset (sorted)."""
    index = np.arange(len(layers[0])) if rows is None else np.asarray(rows)
    for start in range(0, len(index), chunk_rows):
        sel = index[start:start + chunk_rows]
        sl = slice(sel[0], sel[-1] + 1) if len(sel) and sel[-1] - sel[0] + 1 == len(sel) else sel
        yield np.concatenate([_read_rows(X, sl) for X in layers], axis=1)


def _read_rows(X: np.ndarray, rows) -> np.ndarray:
    """Rows of X as float32.  A memory-mapped X is read with a plain file read for a row range,
    so the pages do not stay mapped into (and counted in) the process's memory."""
    if isinstance(X, np.memmap) and isinstance(rows, slice) and X.base is not None \
            and X.flags.c_contiguous and getattr(X, "filename", None):
        width = int(np.prod(X.shape[1:]))
        with open(X.filename, "rb") as f:
            f.seek(X.offset + rows.start * width * X.itemsize)
            out = np.fromfile(f, dtype=X.dtype, count=(rows.stop - rows.start) * width)
        return out.reshape(-1, *X.shape[1:]).astype(np.float32, copy=False)
    return np.asarray(X[rows], dtype=np.float32)


def clusters_at(Z: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster id (D,) of every neuron when the hierarchy Z is cut at distance ``threshold``."""
    from scipy.cluster.hierarchy import fcluster
    return fcluster(Z, t=threshold, criterion="distance")


def cluster_representatives(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """One neuron per cluster, drawn uniformly at random among its members (seeded), as the
    authors' ``extract_independent_neurons`` does; sorted: (K,)."""
    labels = np.asarray(labels)
    order = np.lexsort((np.random.default_rng(seed).random(len(labels)), labels))
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    return np.sort(order[first])


def layer_counts(columns: np.ndarray, width: int, n_layers: int) -> np.ndarray:
    """How many of ``columns`` (indices into layer-major features) lie in each layer: (L+1,)."""
    return np.bincount(np.asarray(columns) // width, minlength=n_layers)


def redundancy_curve(Z: np.ndarray, thresholds: Sequence[float]) -> pd.DataFrame:
    """% of neurons redundant (not a cluster representative) at each clustering threshold c."""
    D = len(Z) + 1
    rows = []
    for c in thresholds:
        k = len(np.unique(clusters_at(Z, c)))
        rows.append({"threshold": float(c), "neurons": D, "clusters": k,
                     "pct_redundant": 100.0 * (D - k) / D})
    return pd.DataFrame(rows)


# ============================================================================ task data
@dataclass
class TaskData:
    """All-layer features of one task for one model.

    X_train (N, (L+1)·D), X_dev (M, (L+1)·D), X_test (T, (L+1)·D) float32, layer-major
    columns (neuron j of layer l is column l·D + j); y_* int64; ``width`` = D; ``meta``:
    provenance (model, weights hash, dataset, subset sizes, seed, pooling)."""
    task: str
    model: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list
    width: int
    meta: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """L + 1 (embeddings and every block)."""
        return self.X_train.shape[1] // self.width

    @property
    def n_neurons(self) -> int:
        return self.X_train.shape[1]

    def layer_columns(self, upto: int) -> np.ndarray:
        """Columns of layers 0..upto."""
        return np.arange((upto + 1) * self.width)


def load_task(model, task: str, n_train: int | None, n_dev: int | None,
              n_test: int | None, pooling: str = "cls", seed: int = 0,
              device: str | None = None, progress: bool = False,
              label: str | None = None) -> TaskData:
    """Features of every layer (cached) on the train / dev / test splits of a task.

    model: a registry name or a loaded text Backbone (e.g. :mod:`diffred.core.finetune`'s
    encoder); label: what ``meta['features']`` calls these features (default: the pooling).
    Token tasks take the first n words of each split (the authors: first 150k training
    tokens), rows = words (last sub-token); sentence tasks take seeded subsets of n sentences
    (dev = 10% of the official train set, test = the official dev set) pooled by ``pooling``.
    """
    from diffred.core.datasets import DATASETS
    from diffred.core.extract import features
    check_choice("task", task, TOKEN_TASKS + SENTENCE_TASKS)
    token = DATASETS[task].kind == "tokens"
    parts, meta = {}, {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        feats = features(model, task, split, layer="all", n=n, seed=seed, pooling=pooling,
                         device=device, progress=progress)
        layers = [feats[k] for k in sorted(feats)]
        parts[split] = (np.concatenate([np.asarray(f.X, np.float32) for f in layers], axis=1),
                        np.asarray(layers[0].y))
        meta = layers[0].meta
    classes, width = layers[0].classes, layers[0].X.shape[1]
    name = getattr(model, "name", model)
    pooled = "last-subtoken" if token else pooling
    return TaskData(task, name, *parts["train"], *parts["dev"], *parts["test"], classes, width,
                    {"model": name, "weights": meta.get("weights"), "dataset": task,
                     "n_train": len(parts["train"][1]), "n_dev": len(parts["dev"][1]),
                     "n_test": len(parts["test"][1]), "seed": seed, "pooling": pooled,
                     "features": label or pooled})


# ============================================================================ probes
def dev_test_accuracy(task: TaskData, columns: Sequence[np.ndarray], C: float = 1.0,
                      max_iter: int = 300, device: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dev accuracy, test accuracy and convergence (B,), (B,), (B,) of B probes, each fitted
    once on its column subset of the task's training features — :func:`diffred.probe_accuracy`'s
    column-mask path, scored on the dev split as an extra evaluation set; ``converged``: the
    probe stopped before ``max_iter``."""
    from diffred.core.probe import probe_accuracy
    res = probe_accuracy(task.X_train, task.y_train, task.X_test, task.y_test, columns=columns,
                         eval_sets={"dev": (task.X_dev, task.y_dev)}, C=C, max_iter=max_iter,
                         device=device)
    return res.eval_accuracy["dev"], res.accuracy, np.asarray(res.converged, bool)


# ============================================================================ layer selection
class LayerSelector:
    """Dalvi et al.'s LayerSelector: probes on layer prefixes 0..l, l = 0..L.

    ``fit(task)`` trains all L+1 prefix probes (the last is the oracle on all layers);
    ``select(delta)`` is the lowest l whose dev accuracy ≥ (1 − delta/100) · oracle dev."""

    def __init__(self, C: float = 1.0, max_iter: int = 300, device: str | None = None):
        self.C, self.max_iter, self.device = C, max_iter, device

    def fit(self, task: TaskData) -> LayerSelector:
        cols = [task.layer_columns(layer) for layer in range(task.n_layers)]
        self.dev_, self.test_, self.converged_ = dev_test_accuracy(task, cols, self.C,
                                                                   self.max_iter, self.device)
        return self

    @property
    def oracle_dev(self) -> float:
        return float(self.dev_[-1])

    @property
    def oracle_test(self) -> float:
        return float(self.test_[-1])

    def select(self, delta: float) -> int:
        """Lowest layer l with dev accuracy of layers 0..l ≥ (1 − delta/100) · oracle dev."""
        return int(np.flatnonzero(self.dev_ >= (1 - delta / 100) * self.oracle_dev)[0])

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"upto_layer": np.arange(len(self.dev_)), "dev_accuracy": self.dev_,
                             "accuracy": self.test_, "converged": self.converged_})


# ============================================================================ ranking
def rank_neurons(X: np.ndarray, y: np.ndarray, n_classes: int | None = None,
                 l1: float = 1e-5, l2: float = 1e-5, max_iter: int = 2000, tol: float = 1e-4,
                 device: str | None = None) -> tuple[np.ndarray, dict]:
    """Neuron ranking from the elastic-net softmax probe, most important first: (D,), and
    the solver's ``info`` (objective, iterations, gradient mapping, converged).

    The probe (:func:`diffred.core.probe.fit_elastic_net`) minimises the authors' objective
    mean CE(x W + b) + l1·‖W‖₁ + l2·‖W‖₂ (the norm, λ1 = λ2 = 1e-5, raw activations) to a
    gradient-mapping tolerance; neurons are ordered by :func:`weight_mass_order`.
    X: (N, D); y: (N,) int."""
    from diffred.core.probe import fit_elastic_net
    W, _, info = fit_elastic_net(X, y, n_classes, l1=l1, l2=l2, max_iter=max_iter, tol=tol,
                                 device=device)
    return weight_mass_order(W), info


def weight_mass_order(W: np.ndarray) -> np.ndarray:
    """Order neurons by when they enter each class's top-weight-mass set: (D,).

    W: (D, C) probe weights.  For class c, neurons sorted by |W[:, c]| enter at the cumulative
    share of class-c weight mass before them; a neuron's key is its earliest entry over
    classes (the limit of the authors' stride search over mass percentages)."""
    A = np.abs(np.asarray(W, np.float64))
    entry = np.empty_like(A)
    for c in range(A.shape[1]):
        order = np.argsort(-A[:, c], kind="stable")
        mass = np.cumsum(A[order, c]) - A[order, c]
        entry[order, c] = mass / max(A[:, c].sum(), 1e-300)
    key = entry.min(1)
    return np.lexsort((-A.max(1), key))


# ============================================================================ minimal set
def minimal_neuron_set(task: TaskData, candidates: np.ndarray, order: np.ndarray,
                       target_dev: float, percentages: Sequence[float] = PERCENTAGES,
                       n_random_subsets: int = 1, C: float = 1.0, max_iter: int = 300,
                       device: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Accuracy of the top-k ranked candidates (and of random k-subsets) for every k%.

    candidates: (K,) column indices kept by layer selection + clustering; order: (K,) ranking
    of the candidates (indices into ``candidates``); k = ⌊p · all neurons⌋ for p in
    ``percentages`` (k ≤ K).  Returns rows: pct, k, method ('ranked' | 'random'), dev_accuracy,
    accuracy (random rows: means over the ``n_random_subsets`` subsets, with the 95%
    t-interval half-widths ``dev_accuracy_ci95`` / ``accuracy_ci95`` over them; NaN with one
    subset and for ranked rows), converged (share of the row's probes that converged),
    meets_target (ranked rows only)."""
    rng = np.random.default_rng(seed)
    ks = sorted({max(1, int(p * task.n_neurons)) for p in percentages} | {len(candidates)})
    ks = [k for k in ks if k <= len(candidates)]
    views, labels = [], []
    for k in ks:
        views.append(candidates[order[:k]])
        labels.append((k, "ranked"))
        for _ in range(n_random_subsets):
            views.append(rng.choice(candidates, size=k, replace=False))
            labels.append((k, "random"))
    dev, test, converged = dev_test_accuracy(task, views, C, max_iter, device)
    df = pd.DataFrame([{"k": k, "pct": 100.0 * k / task.n_neurons, "method": m}
                       for k, m in labels])
    df["dev_accuracy"], df["accuracy"], df["converged"] = dev, test, converged.astype(float)
    keys = ["k", "pct", "method"]
    half = df.groupby(keys)[["dev_accuracy", "accuracy"]].agg(lambda v: t_interval(v)[1])
    df = df.groupby(keys, as_index=False)[["dev_accuracy", "accuracy", "converged"]].mean()
    df = df.join(half.add_suffix("_ci95"), on=keys)
    df["meets_target"] = (df["method"] == "ranked") & (df["dev_accuracy"] >= target_dev)
    return df


def probe_cost(task: TaskData, columns: np.ndarray, C: float = 1.0, max_iter: int = 300,
               device: str | None = None, repeats: int = 3) -> dict:
    """Fit / predict wall time (s, best of ``repeats`` predictions), parameter count and
    feature bytes of one probe on ``columns`` of the task."""
    from diffred.core.probe import LinearProbe
    Xtr, Xte = task.X_train[:, columns], task.X_test[:, columns]
    t0 = time.perf_counter()
    probe = LinearProbe(C=C, max_iter=max_iter, device=device).fit(Xtr, task.y_train)
    fit_s = time.perf_counter() - t0
    pred_s = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        probe.decision_function(Xte)
        pred_s = min(pred_s, time.perf_counter() - t0)
    return {"neurons": len(columns), "fit_s": fit_s, "predict_s": pred_s,
            "params": int(len(columns) + 1) * len(probe.classes_),
            "feature_mb": Xtr.nbytes / 2 ** 20, "accuracy": probe.score(Xte, task.y_test)}


# ============================================================================ the pipeline
@dataclass
class TaskRedundancy:
    """Results of :func:`task_redundancy`: ``summary`` (one row per δ pair), ``curves``
    (accuracy vs k% per selected layer, ranked and random), ``layers`` (prefix probes),
    ``cost`` (oracle vs minimal-set probe at the first δ pair), ``kept_layers`` (neurons per
    layer after clustering, per selected layer), ``sweep`` (:func:`cluster_sweep`)."""
    summary: pd.DataFrame
    curves: pd.DataFrame
    layers: pd.DataFrame
    cost: pd.DataFrame
    kept_layers: pd.DataFrame
    sweep: pd.DataFrame


def signal_check(task: TaskData, oracle_dev: float, z: float = 1.96) -> dict:
    """Whether a task has usable signal, decided on the **dev** split (never on test, whose
    accuracies are reported): the majority-class rate on dev (majority class of the training
    labels), the oracle's dev 95% CI half-width z·√(p(1−p)/n_dev), and ``near_chance`` = that
    CI reaches the majority rate."""
    majority = np.bincount(task.y_train).argmax()
    rate = float(np.mean(task.y_dev == majority))
    half = z * np.sqrt(oracle_dev * (1 - oracle_dev) / len(task.y_dev))
    return {"majority_dev_accuracy": rate, "oracle_dev_ci95": float(half),
            "near_chance": bool(oracle_dev - half <= rate)}


def usable(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows whose oracle is not near chance (:func:`signal_check`)."""
    return summary[~summary.near_chance.astype(bool)]


def usable_sweep(sweep: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Clustering-sweep rows of the model × task × feature runs whose oracle is not near chance
    in ``summary``."""
    chance = {tuple(k) for k in summary.loc[summary.near_chance.astype(bool),
                                            ["model", "dataset", "features"]].values}
    return sweep[[k not in chance for k in zip(sweep.model, sweep.dataset, sweep.features)]]


SWEEP_COLUMNS = ["threshold", "neurons_kept", "pct_redundant", "dev_accuracy", "accuracy",
                 "converged", "corr_rows"]


def cluster_sweep(task: TaskData, thresholds: Sequence[float], corr_rows=None, seed: int = 0,
                  C: float = 1.0, max_iter: int = 300, device: str | None = None
                  ) -> pd.DataFrame:
    """General redundancy on the task's data with the probe retrained at every threshold
    (the authors' Section 5.2 protocol): correlation clustering of ALL neurons, one random
    representative per cluster, a probe on the representatives.

    corr_rows: the layer arrays the correlation is streamed from (default the task's training
    features; e.g. the first 150k training tokens).  Rows: threshold (−1 = no clustering),
    neurons kept, pct_redundant, dev_accuracy, accuracy."""
    layers = corr_rows if corr_rows is not None else [task.X_train]
    Z = correlation_linkage(neuron_correlation(layer_chunks(layers), device))
    D, views, rows = task.n_neurons, [np.arange(task.n_neurons)], [(-1.0, task.n_neurons)]
    for c in thresholds:
        kept = cluster_representatives(clusters_at(Z, c), seed)
        views.append(kept)
        rows.append((float(c), len(kept)))
    dev, test, converged = dev_test_accuracy(task, views, C, max_iter, device)
    df = pd.DataFrame(rows, columns=["threshold", "neurons_kept"])
    df["pct_redundant"] = 100.0 * (D - df.neurons_kept) / D
    df["dev_accuracy"], df["accuracy"], df["converged"] = dev, test, converged
    return df.assign(corr_rows=int(len(layers[0])))


def task_redundancy(task: TaskData, deltas: Sequence[tuple] = DELTAS, threshold: float = 0.3,
                    percentages: Sequence[float] = PERCENTAGES, n_random_subsets: int = 1,
                    C: float = 1.0, max_iter: int = 300, device: str | None = None,
                    seed: int = 0, sweep_thresholds: Sequence[float] = (),
                    sweep_rows=None) -> TaskRedundancy:
    """Dalvi et al.'s task-specific pipeline for every (δ_L, δ_N) pair in ``deltas``, and the
    per-task :func:`cluster_sweep` at ``sweep_thresholds`` (on ``sweep_rows``).

    Steps share work: the prefix probes are fitted once; clustering, ranking and the k% search
    run once per distinct selected layer.  Every summary row carries its noise: the dev
    standard error of the δ_N baseline (``dev_se``) beside the δ_N margin (``delta_resolved``
    when the margin exceeds it) and :func:`signal_check`."""
    selector = LayerSelector(C, max_iter, device).fit(task)
    prov = {**task.meta, "threshold": threshold}
    signal = signal_check(task, selector.oracle_dev)
    per_layer, summary, curves, kept_layers = {}, [], [], []
    for d_layer, d_neuron in deltas:
        top = selector.select(d_layer)
        if top not in per_layer:
            cols = task.layer_columns(top)
            corr = neuron_correlation(layer_chunks([task.X_train[:, cols]]), device)
            kept = cols[cluster_representatives(clusters_at(correlation_linkage(corr),
                                                            threshold), seed)]
            order, info = rank_neurons(task.X_train[:, kept], task.y_train, len(task.classes),
                                       device=device)
            curve = minimal_neuron_set(task, kept, order, 0.0, percentages, n_random_subsets,
                                       C=C, max_iter=max_iter, device=device, seed=seed)
            # the probe on all kept neurons (the k = K row) is the δ_N baseline
            base_dev = float(curve[(curve.k == len(kept))
                                   & (curve.method == "ranked")].dev_accuracy.iloc[0])
            curve.insert(0, "selected_layer", top)
            per_layer[top] = (kept, base_dev, order, curve, info)
            curves.append(curve)
            counts = layer_counts(kept, task.width, task.n_layers)
            kept_layers.append(pd.DataFrame({"selected_layer": top, "layer": np.arange(len(counts)),
                                             "neurons_kept": counts}))
        kept, base_dev, order, curve, info = per_layer[top]
        target = (1 - d_neuron / 100) * base_dev
        ranked = curve[curve.method == "ranked"]
        hit = ranked[ranked.dev_accuracy >= target]
        best = hit.iloc[0] if len(hit) else ranked.iloc[-1]
        rand = curve[(curve.method == "random") & (curve.k == best.k)]
        dev_se = float(np.sqrt(base_dev * (1 - base_dev) / len(task.y_dev)))
        summary.append({**prov, "delta_layer": d_layer, "delta_neuron": d_neuron,
                        "oracle_dev_accuracy": selector.oracle_dev,
                        "oracle_accuracy": selector.oracle_test,
                        **signal, "neurons_total": task.n_neurons, "selected_layer": top,
                        "neurons_after_ls": len(task.layer_columns(top)),
                        "neurons_after_cc": len(kept), "base_dev_accuracy": base_dev,
                        "dev_se": dev_se, "delta_margin": base_dev - target,
                        "delta_resolved": bool(base_dev - target > dev_se),
                        "ranking_converged": info["converged"],
                        "ranking_iterations": info["iterations"],
                        "ranking_gradient_mapping": info["gradient_mapping"],
                        "probes_converged": float(np.mean(np.r_[selector.converged_,
                                                                curve.converged])),
                        "minimal_k": int(best.k), "minimal_pct": float(best.pct),
                        "minimal_dev_accuracy": float(best.dev_accuracy),
                        "minimal_accuracy": float(best.accuracy),
                        "random_accuracy": float(rand.accuracy.iloc[0]) if len(rand)
                        else float("nan"),
                        "random_accuracy_ci95": float(rand.accuracy_ci95.iloc[0]) if len(rand)
                        else float("nan"),
                        "pct_of_oracle": 100 * float(best.accuracy) / selector.oracle_test,
                        "pct_removable": 100 * (1 - best.k / task.n_neurons)})
    curves = pd.concat(curves, ignore_index=True)
    for key in ("model", "dataset", "weights", "features"):
        curves[key] = prov.get(key)
    first = summary[0]
    top = first["selected_layer"]
    minimal_cols = per_layer[top][0][per_layer[top][2][:first["minimal_k"]]]
    cost = pd.DataFrame([{**prov, "probe": name, **probe_cost(task, cols, C, max_iter, device)}
                         for name, cols in (("oracle (all layers)", np.arange(task.n_neurons)),
                                            (f"minimal set δ={deltas[0]}", minimal_cols))])
    ident = {"model": task.model, "dataset": task.task, "features": prov.get("features")}
    layers = selector.table().assign(**ident)
    kept_layers = pd.concat(kept_layers, ignore_index=True).assign(**ident)
    # no thresholds: an empty table that keeps its columns (it round-trips through CSV)
    sweep = cluster_sweep(task, sweep_thresholds, sweep_rows, seed, C, max_iter, device) \
        if len(sweep_thresholds) else pd.DataFrame(columns=SWEEP_COLUMNS)
    return TaskRedundancy(pd.DataFrame(summary), curves, layers, cost, kept_layers,
                          sweep.assign(**ident))
