"""Chapter 2's cached verbs: :mod:`diffred.studies.neurons.method`' analyses run per model and task.

:func:`general_tables` — layer CKA and % redundant vs threshold over ALL neurons of a model;
:func:`task_tables` — the task pipeline and the per-task clustering sweep of one model, task
and feature source (``"pretrained"`` or ``"finetuned"``: :mod:`diffred.core.finetune`);
:func:`run_tasks` — every model × task × feature source, tables concatenated;
:func:`chapter_tasks` — the chapter's task pipeline from its parameters.
Every table comes from :func:`diffred.core.cache.cached_tables`, keyed by the features' content
keys, the settings and the code, so a warm rebuild computes nothing.  The paper's claims beside
this run's aggregates: :func:`diffred.studies.neurons.paper.paper_vs_run`.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from diffred.core.errors import check_choice
from diffred.studies.neurons import method as neurons
from diffred.studies.neurons.method import DELTAS, PERCENTAGES, TOKEN_TASKS

#: feature sources of sentence tasks: the task-fine-tuned encoder's [CLS] (the paper), or the
#: pretrained encoder pooled by [CLS] or by mean
SENTENCE_FEATURES = ("finetuned", "cls", "mean")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def feature_label(task: str, source: str) -> str:
    if task in TOKEN_TASKS:
        return "pretrained, last sub-token"
    return {"finetuned": "fine-tuned, [CLS]", "cls": "pretrained, [CLS]",
            "mean": "pretrained, mean"}[source]


# ============================================================================ general redundancy
def general_redundancy(model: str, dataset: str = "ud_pos", n: int = 5000,
                       thresholds: Sequence[float] = THRESHOLDS, chunk_rows: int = 4096,
                       device: str | None = None, progress: bool = False
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Layer CKA table and % redundant vs threshold for ALL neurons of ``model``.

    Features of every layer (first ``n`` words of ``dataset``'s train split) are read from the
    cache layer by layer in chunks of ``chunk_rows`` rows; returns (similarity, curve), both
    with provenance columns."""
    from diffred.core.extract import features
    from diffred.core.similarity import correlation_linkage, neuron_correlation
    feats = features(model, dataset, "train", layer="all", n=n, device=device, progress=progress)
    layers = [feats[k].X for k in sorted(feats)]
    meta = feats[0].meta
    prov = {"model": model, "weights": meta.get("weights"), "dataset": dataset,
            "rows": len(layers[0]), "neurons_total": sum(X.shape[1] for X in layers)}
    sim = neurons.layer_similarity(layers).assign(**prov)
    Z = correlation_linkage(neuron_correlation(neurons.layer_chunks(layers, chunk_rows), device))
    return sim, neurons.redundancy_curve(Z, thresholds).assign(**prov)


def _feature_keys(model, dataset: str, split: str, n: int | None, seed: int = 0,
                  pooling: str = "cls", device: str | None = None,
                  progress: bool = False) -> list[str]:
    """Content keys of every layer's cached features (extracted on a miss): what a result
    computed from them depends on — weights hash, data subset, preprocessing.  Only keys are
    needed, so found entries are size-checked, not hashed (a warm rebuild whose tables are all
    cached then reads no feature array; a computation that does read them verifies them)."""
    from diffred.core.extract import features
    feats = features(model, dataset, split, layer="all", n=n, seed=seed, pooling=pooling,
                     device=device, progress=progress, verify=False)
    return [feats[k].meta["key"] for k in sorted(feats)]


def general_tables(model: str, dataset: str = "ud_pos", n: int = 5000,
                   thresholds: Sequence[float] = THRESHOLDS, device: str | None = None,
                   progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`general_redundancy`, answered from the result cache when the features, the
    thresholds and the code are unchanged (a warm rebuild clusters nothing)."""
    from diffred.core.cache import cached_tables
    spec = {"model": model, "features": _feature_keys(model, dataset, "train", n, device=device,
                                                      progress=progress),
            "thresholds": [float(t) for t in thresholds]}

    def compute():
        sim, curve = general_redundancy(model, dataset, n, thresholds, device=device,
                                        progress=progress)
        return {"similarity": sim, "curve": curve}
    tables = cached_tables("general-redundancy", spec, compute,
                           code=(general_redundancy, general_tables))
    return tables["similarity"], tables["curve"]


# ============================================================================ task pipeline
def task_tables(model: str, task: str, n_train: int, n_eval: int | None, *,
                source: str = "finetuned", n_finetune: int | None = 1000,
                finetune_epochs: int = 3, n_cluster: int | None = None,
                sweep_thresholds: Sequence[float] = THRESHOLDS, seed: int = 0,
                deltas: Sequence[tuple] = DELTAS, threshold: float = 0.3,
                percentages: Sequence[float] = PERCENTAGES, n_random_subsets: int = 1,
                C: float = 1.0, max_iter: int = 300, device: str | None = None,
                progress: bool = False) -> dict[str, pd.DataFrame]:
    """:func:`diffred.studies.neurons.method.task_redundancy` of one model, task and feature
    source as tables
    (summary, curves, layers, cost, kept_layers, sweep), from the result cache when the
    features, the settings and the code are unchanged.

    source (sentence tasks): ``"finetuned"`` — fine-tune ``model`` on ``n_finetune`` seeded
    training sentences (a subset of the probe's ``n_train``, :data:`diffred.core.finetune.PAPER_CONFIG`
    with ``finetune_epochs``) and read its ``[CLS]`` states; the summary then carries the tuned
    model's own dev/test accuracy; ``"cls"`` / ``"mean"`` — the pretrained encoder pooled so.
    n_cluster (token tasks): the first n training words the clustering sweep's correlation is
    streamed from (the paper: 150k); default the probe's training words."""
    from diffred.core import finetune
    from diffred.core.cache import cached_tables
    from diffred.core.extract import features
    token = task in TOKEN_TASKS
    check_choice("sentence features", source, SENTENCE_FEATURES)
    tuned = None
    if not token and source == "finetuned":
        config = finetune.FineTuneConfig(epochs=finetune_epochs)
        tuned = finetune.finetune(model, task, n_finetune, seed=seed, config=config,
                                  device=device)
    encoder = tuned.backbone if tuned else model
    pooling = "cls" if token or source == "finetuned" else source
    keys = {split: _feature_keys(encoder, task, split, n, seed, pooling, device, progress)
            for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval))}
    cluster_n = n_cluster if token and n_cluster and n_cluster > n_train else None
    if cluster_n:
        keys["cluster"] = _feature_keys(encoder, task, "train", cluster_n, seed, pooling,
                                        device, progress)
    label = feature_label(task, source)
    spec = {"model": model, "task": task, "features": keys, "source": label, "seed": seed,
            "deltas": [list(d) for d in deltas], "threshold": threshold,
            "percentages": [float(p) for p in percentages], "n_random_subsets": n_random_subsets,
            "C": C, "max_iter": max_iter, "sweep": [float(t) for t in sweep_thresholds]}

    def compute():
        data = neurons.load_task(encoder, task, n_train, n_eval, n_eval, pooling, seed,
                                 device, progress, label=label)
        data.model = data.meta["model"] = model
        rows = None
        if cluster_n:
            feats = features(encoder, task, "train", layer="all", n=cluster_n, seed=seed,
                             device=device, progress=progress)
            rows = [feats[k].X for k in sorted(feats)]
        r = neurons.task_redundancy(data, [tuple(d) for d in deltas], threshold, percentages,
                                    n_random_subsets, C, max_iter, device, seed, sweep_thresholds,
                                    rows)
        summary = r.summary
        if tuned is not None:
            last = slice((data.n_layers - 1) * data.width, data.n_neurons)
            summary = summary.assign(
                finetuned_dev_accuracy=tuned.accuracy(data.X_dev[:, last], data.y_dev),
                finetuned_accuracy=tuned.accuracy(data.X_test[:, last], data.y_test),
                n_finetune=tuned.meta["n_train"], finetune_s=tuned.meta.get("seconds"))
        return {"summary": summary, "curves": r.curves, "layers": r.layers, "cost": r.cost,
                "kept_layers": r.kept_layers, "sweep": r.sweep}
    return cached_tables("task-redundancy", spec, compute,
                         code=(task_tables, feature_label))


def run_tasks(model_tasks: dict, *, n_train_tokens: int, n_eval_tokens: int,
              n_train_sentences: int, n_eval_sentences: int | None,
              sentence_features: Sequence[str] = ("finetuned", "mean"),
              n_cluster_tokens: int | None = None, sweep_models: Sequence[str] | None = None,
              sweep_thresholds: Sequence[float] = THRESHOLDS, **settings
              ) -> dict[str, pd.DataFrame]:
    """:func:`task_tables` for every model and its tasks ({model: [task, ...]}), token tasks
    on ``n_*_tokens`` words, sentence tasks on ``n_*_sentences`` sentences once per entry of
    ``sentence_features``; the per-task clustering sweep (token tasks on ``n_cluster_tokens``
    words) for the models in ``sweep_models`` (None: all); the tables of all runs
    concatenated."""
    parts: dict[str, list] = {}
    for model, tasks in model_tasks.items():
        sweep = sweep_thresholds if sweep_models is None or model in sweep_models else ()
        for task in tasks:
            token = task in TOKEN_TASKS
            for source in (["pretrained"] if token else sentence_features):
                tables = task_tables(
                    model, task, n_train_tokens if token else n_train_sentences,
                    n_eval_tokens if token else n_eval_sentences,
                    source="cls" if token else source, sweep_thresholds=sweep,
                    n_cluster=n_cluster_tokens if token and len(sweep) else None, **settings)
                for name, df in tables.items():
                    parts.setdefault(name, []).append(df)
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in parts.items()}


# ============================================================================ the chapter's run
#: :func:`run_tasks` tables the chapter saves, and the names they are saved under (in order)
SAVED_TABLES = {"summary": "task_summary", "curves": "selection_curves", "cost": "probe_cost",
                "sweep": "task_cluster_sweep", "kept_layers": "kept_layers"}


def chapter_tasks(*, models: Sequence[str], tasks: Sequence[str], mpnet_tasks: Sequence[str],
                  n_train_tokens: int, n_eval_tokens: int, n_train_sentences: int,
                  n_eval_sentences: int | None, sentence_features: Sequence[str],
                  n_cluster_tokens: int | None, n_finetune: int | None, tune_epochs: int,
                  sweep_models: Sequence[str] | None, thresholds: Sequence[float], seed: int,
                  delta_pairs: Sequence[Sequence[float]], threshold: float,
                  percentages: Sequence[float] | None, n_random_subsets: int, C: float,
                  max_iter: int, device: str | None, **_other) -> dict[str, pd.DataFrame]:
    """The task pipeline of chapter 2 from its parameters: :func:`run_tasks` over ``tasks`` for
    every model (``mpnet_base``: ``mpnet_tasks``).

    Parameters
    ----------
    models, tasks, mpnet_tasks, n_train_tokens, n_eval_tokens, n_train_sentences, \
n_eval_sentences, sentence_features, n_cluster_tokens, n_finetune, sweep_models, seed, \
threshold, n_random_subsets, C, max_iter, device
        The chapter's parameters of the same names (the page passes ``**ch.params``).
    tune_epochs : int
        Fine-tuning epochs (:func:`run_tasks`' ``finetune_epochs``).
    thresholds : sequence of float
        Thresholds of the per-task clustering sweep (``sweep_thresholds``).
    delta_pairs : sequence of (δ_L, δ_N)
        The δ pairs of the pipeline (``deltas``).
    percentages : sequence of float or None
        The minimal-set grid; None: the authors' 27 points
        (:data:`diffred.studies.neurons.method.PERCENTAGES`).
    **_other
        The chapter's other parameters, ignored.

    Returns
    -------
    dict of str to DataFrame
        :func:`run_tasks`' tables: ``summary``, ``curves``, ``layers``, ``cost``,
        ``kept_layers``, ``sweep`` (:data:`SAVED_TABLES`: those the chapter saves).
    """
    return run_tasks(
        {m: mpnet_tasks if m == "mpnet_base" else tasks for m in models},
        n_train_tokens=n_train_tokens, n_eval_tokens=n_eval_tokens,
        n_train_sentences=n_train_sentences, n_eval_sentences=n_eval_sentences,
        sentence_features=sentence_features, n_cluster_tokens=n_cluster_tokens,
        n_finetune=n_finetune, finetune_epochs=tune_epochs, sweep_models=sweep_models,
        sweep_thresholds=thresholds,
        seed=seed, deltas=delta_pairs, threshold=threshold,
        percentages=tuple(percentages or PERCENTAGES),
        n_random_subsets=n_random_subsets, C=C, max_iter=max_iter, device=device)
