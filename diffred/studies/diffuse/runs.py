"""Chapter 1's pipelines: the steps a page chains, each one verb over :mod:`.method`.

Nothing here computes anything :mod:`diffred.studies.diffuse.method` does not: these verbs
gather its sweeps into the chapter's tables, so a page cell is one call.  Verbs:
:func:`paper_backbones` (the parameters of ``paper_models = True``), :func:`sweep_tables`
(the probe runs, per-class table and accuracy curve of the sweeps), :func:`subset_cka_table`
(CKA of random subsets with the full layer for several backbones) and :func:`layer_dr_table`
(DR of intermediate stages beside the last layer).
"""
from __future__ import annotations

import pandas as pd

from diffred.studies.diffuse.method import SweepResult, accuracy_curve, dr_table, subset_cka
from diffred.studies.diffuse.paper import PAPER_MODELS


def paper_backbones() -> tuple[list[str], None, list[str], list[str], list[str]]:
    """The chapter's settings when ``paper_models = True``: the paper's backbones, each at
    its native resolution.

    Returns
    -------
    models : list of str
        The paper's timm backbones (:data:`diffred.studies.diffuse.paper.PAPER_MODELS`).
    resolution : None
        Each model's native input size.
    baseline_models, curve_models : list of str
        ``["timm:resnet50"]``, the paper's ResNet-50, for the baselines and the learning curve.
    layer_models : list of str
        Empty: the intermediate stages are named for EfficientNet-Lite only.
    """
    return list(PAPER_MODELS), None, ["timm:resnet50"], ["timm:resnet50"], []


def sweep_tables(subsets, base: SweepResult) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The chapter's probe tables from its random-subset sweeps and its baseline sweep.

    Parameters
    ----------
    subsets : list of SweepResult
        Random-subset sweeps (:func:`~diffred.studies.diffuse.method.run_sweeps`), in page
        order (vision, text).
    base : SweepResult
        The baseline sweep; its full-layer rows (``method == "full"``, already in
        ``subsets``) are dropped.

    Returns
    -------
    runs : DataFrame
        One row per probe, the columns of ``SweepResult.runs`` (method, fraction, seed, k,
        dim, accuracy, full_accuracy, mean_class_accuracy, worst_class_accuracy,
        probe_seconds, model, weights, dataset, layer, subsets, n_train, n_test,
        code_version), concatenated with a fresh index.
    per_class : DataFrame
        ``SweepResult.per_class`` of ``subsets`` (not the baselines), concatenated with
        their own indices: one row per probe x class.
    curve : DataFrame
        :func:`~diffred.studies.diffuse.method.accuracy_curve` of ``runs``.
    """
    runs = pd.concat([*(s.runs for s in subsets), base.runs[base.runs.method != "full"]],
                     ignore_index=True)
    per_class = pd.concat([s.per_class for s in subsets])
    return runs, per_class, accuracy_curve(runs)


def subset_cka_table(models, dataset: str, sizes, seeds, *, n_per_class: int,
                     resolution: int | None) -> pd.DataFrame:
    """CKA of random neuron subsets with the whole last layer, per backbone, on the cached
    test features of ``dataset`` (:func:`~diffred.studies.diffuse.method.subset_cka`).

    Parameters
    ----------
    models : list of str
        Backbones (vision).
    dataset : str
        The dataset whose test split is used.
    sizes : list of int
        Subset sizes (neurons); those not below the layer's width are skipped.
    seeds : iterable of int
        Random subsets per size.
    n_per_class : int
        Test images per class.
    resolution : int or None
        Input resolution (None: each model's native one).

    Returns
    -------
    DataFrame
        One row per (model, size, seed): size, fraction, seed, cka, model, weights, dataset,
        n_images.
    """
    from diffred.core.extract import features
    cka = []
    for model in models:
        test = features(model, dataset, "test", n_per_class=n_per_class, resolution=resolution,
                        progress=False)
        kept = [s for s in sizes if s < test.X.shape[1]]
        cka.append(subset_cka(test.X, kept, seeds).assign(
            model=model, weights=test.meta["weights"], dataset=dataset, n_images=len(test.y)))
    return pd.concat(cka, ignore_index=True)


def layer_dr_table(dr: pd.DataFrame, layer_runs: pd.DataFrame, models, datasets,
                   deltas) -> pd.DataFrame:
    """DR of intermediate stages beside the last layer's.

    Parameters
    ----------
    dr : DataFrame
        :func:`~diffred.studies.diffuse.method.dr_table` of the chapter's main curve; its
        rows of ``models`` on ``datasets`` (the last layer) come first.
    layer_runs : DataFrame
        ``SweepResult.runs`` of the intermediate-stage sweep.
    models, datasets : list of str
        The backbones and datasets of that sweep.
    deltas : list of float
        The δ of the DR columns.

    Returns
    -------
    DataFrame
        The columns of :func:`~diffred.studies.diffuse.method.dr_table` (model, dataset,
        layer, dim, full_accuracy, ``DR(δ)`` per δ, gap_at_20pct, gap_ci95), last layer first,
        then the stages.
    """
    return pd.concat([dr[dr.model.isin(models) & dr.dataset.isin(datasets)],
                      dr_table(accuracy_curve(layer_runs), deltas)], ignore_index=True)
