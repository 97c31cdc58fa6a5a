"""Chapter 2's figures, reader tables and findings text, from the tables of
:mod:`diffred.studies.neurons.method` and :mod:`diffred.studies.neurons.runs` (the paper's
numbers: :mod:`diffred.studies.neurons.paper`).  Presentation only: nothing here computes a
number the tables lack (and editing it invalidates no cached analysis).

A table verb returns either a DataFrame or ``(df, columns, rename, digits)``, the arguments of
:func:`diffred.reader_table` (``diffred.reader_table(*report.task_table(summary))``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.studies.neurons.method import usable, usable_sweep
from diffred.studies.neurons.paper import CLAIMS


def with_task(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``task`` column "model · dataset · features" (one wrapping text column
    instead of three in a reader table)."""
    return df.assign(task=df.model + " · " + df.dataset + " · " + df.features)


def sweep_view(sweep: pd.DataFrame) -> pd.DataFrame:
    """The per-task clustering sweep as one row per task and one column per threshold c,
    each cell "% redundant · test accuracy" (threshold −1: no clustering)."""
    rows = with_task(sweep).assign(cell=[f"{p:.1f}% · {a:.3f}" for p, a in
                                         zip(sweep.pct_redundant, sweep.accuracy)])
    table = rows.pivot_table(index="task", columns="threshold", values="cell", aggfunc="first",
                             sort=False)
    table.columns = ["no clustering" if c < 0 else f"c = {c:g}" for c in table.columns]
    return table.reset_index()


def similarity_heatmap(df: pd.DataFrame, title: str = "Linear CKA between layers"):
    """Heatmap of a :func:`layer_similarity` table (faceted by ``model`` if present)."""
    from diffred.core.plots import alt
    base = alt.Chart(df).mark_rect().encode(
        x=alt.X("layer_a:O", title="layer"), y=alt.Y("layer_b:O", title="layer", sort="descending"),
        color=alt.Color("cka:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), title="CKA"),
        tooltip=["layer_a", "layer_b", alt.Tooltip("cka:Q", format=".3f")])
    chart = base.properties(width=220, height=220)
    if "model" in df:
        chart = chart.facet(column=alt.Column("model:N", title=None)).resolve_scale(
            x="independent", y="independent")
    return chart.properties(title=title)


def redundancy_chart(df: pd.DataFrame):
    """% of neurons redundant vs clustering threshold c, one line per model."""
    from diffred.core.plots import alt
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("threshold:Q", title="clustering threshold c (distance 1 − |ρ|)"),
        y=alt.Y("pct_redundant:Q", title="% neurons redundant", scale=alt.Scale(domain=[0, 100])),
        color="model:N", tooltip=["model", "threshold", "clusters", "neurons",
                                  alt.Tooltip("pct_redundant:Q", format=".1f")]
    ).properties(width=380, height=240, title="General neuron redundancy (correlation clustering)")


def selection_chart(curves: pd.DataFrame):
    """Test accuracy vs % of neurons kept: elastic-net ranking vs random, per task and model."""
    from diffred.core.plots import alt
    data = curves.assign(panel=curves["model"] + " · " + curves["dataset"])
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("pct:Q", title="% of all neurons kept", scale=alt.Scale(type="log")),
        y=alt.Y("accuracy:Q", title="test accuracy", scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", title="selection", legend=alt.Legend(orient="bottom")),
        strokeDash=alt.StrokeDash("selected_layer:N", title="layers 0..l",
                                  legend=alt.Legend(orient="bottom")),
        tooltip=["model", "dataset", "selected_layer", "method", "k",
                 alt.Tooltip("pct:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".3f")]
    ).properties(width=140, height=130).facet(   # three panels a row fit the content column
        facet=alt.Facet("panel:N", title=None, header=alt.Header(labelLimit=190)), columns=3
    ).resolve_scale(y="independent").properties(title="Minimal neuron sets: ranked vs random")


# ============================================================================ reader tables
def cka_by_gap(similarity: pd.DataFrame) -> pd.DataFrame:
    """Mean CKA of layer pairs the same number of layers apart, per model.

    Parameters
    ----------
    similarity : DataFrame
        :func:`diffred.studies.neurons.runs.general_tables` similarity rows, with columns
        ``model``, ``layer_a``, ``layer_b``, ``cka``.

    Returns
    -------
    DataFrame
        Index ``layers apart`` (1, 2, ...), one column per model, CKA rounded to 3 digits.
    """
    return similarity.assign(gap=(similarity.layer_a - similarity.layer_b).abs()).query(
        "gap > 0").groupby(["model", "gap"]).cka.mean().unstack("model").round(3).rename_axis(
        "layers apart")


def task_table(summary: pd.DataFrame) -> tuple:
    """Table 2.1: the task pipeline per model, task, feature source and δ pair.

    Parameters
    ----------
    summary : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``summary``, with columns ``model``,
        ``dataset``, ``features``, ``delta_layer``, ``delta_neuron``, ``oracle_accuracy``,
        ``oracle_dev_accuracy``, ``majority_dev_accuracy``, ``near_chance``, ``selected_layer``,
        ``neurons_after_ls``,
        ``neurons_after_cc``, ``minimal_k``, ``minimal_accuracy``, ``pct_of_oracle``, ``dev_se``,
        ``delta_resolved``.

    Returns
    -------
    tuple
        ``(df, columns, rename, digits)``, the arguments of :func:`diffred.reader_table`.
    """
    return (with_task(summary),
            ["task", "delta_layer", "delta_neuron", "oracle_accuracy", "oracle_dev_accuracy",
             "majority_dev_accuracy", "near_chance", "selected_layer", "neurons_after_ls",
             "neurons_after_cc", "minimal_k", "minimal_accuracy", "pct_of_oracle", "dev_se",
             "delta_resolved"],
            {"delta_layer": "δL", "delta_neuron": "δN", "oracle_accuracy": "oracle acc.",
             "oracle_dev_accuracy": "oracle dev", "majority_dev_accuracy": "majority dev",
             "near_chance": "near chance (dev)", "selected_layer": "layer",
             "neurons_after_ls": "after LS", "neurons_after_cc": "after CC",
             "minimal_k": "minimal set", "minimal_accuracy": "minimal acc.",
             "pct_of_oracle": "% of oracle", "dev_se": "dev SE", "delta_resolved": "δN > SE"}, 3)


def finetuned_table(summary: pd.DataFrame) -> tuple | None:
    """Table 2.2: each fine-tuned model's own accuracy beside the oracle probe on its features.

    Parameters
    ----------
    summary : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``summary``; rows whose ``features``
        start with "fine-tuned" carry ``n_finetune``, ``finetune_s``, ``finetuned_dev_accuracy``,
        ``finetuned_accuracy`` beside ``model``, ``dataset``, ``oracle_accuracy``.

    Returns
    -------
    tuple or None
        ``(df, columns, rename, digits)`` for :func:`diffred.reader_table`, one row per model and
        dataset; None when no run was fine-tuned (no ``finetuned_accuracy`` column).
    """
    tuned = summary[summary.features.str.startswith("fine-tuned")].drop_duplicates(
        ["model", "dataset"])
    if "finetuned_accuracy" not in tuned:
        return None
    return (tuned, ["model", "dataset", "n_finetune", "finetune_s", "finetuned_dev_accuracy",
                    "finetuned_accuracy", "oracle_accuracy"],
            {"n_finetune": "tuning sentences", "finetune_s": "tuning (s)",
             "finetuned_dev_accuracy": "tuned model dev", "finetuned_accuracy": "tuned model test",
             "oracle_accuracy": "oracle probe test"}, 3)


def kept_layers_view(kept_layers: pd.DataFrame, summary: pd.DataFrame, delta) -> pd.DataFrame:
    """Table 2.3: neurons kept after correlation clustering, per task and layer, at one δ pair.

    Parameters
    ----------
    kept_layers : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``kept_layers``, with columns ``model``,
        ``dataset``, ``features``, ``selected_layer``, ``layer``, ``neurons_kept``.
    summary : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``summary`` (``delta_layer``,
        ``delta_neuron``, ``selected_layer`` per model, dataset and features).
    delta : pair of float
        ``(δ_L, δ_N)``: the δ pair whose selected layer is shown.

    Returns
    -------
    DataFrame
        Column ``task`` ("model · dataset · features"), then one integer column per layer,
        ``L0`` (embeddings), ``L1``, ...
    """
    first = kept_layers.merge(
        summary[(summary.delta_layer == delta[0]) & (summary.delta_neuron == delta[1])][
            ["model", "dataset", "features", "selected_layer"]])
    return (with_task(first).pivot_table(index="task", columns="layer", values="neurons_kept",
                                         aggfunc="sum", sort=False)
            .fillna(0).astype(int).rename(columns=lambda layer: f"L{layer}").reset_index())


def cost_table(cost: pd.DataFrame) -> tuple:
    """Table 2.5: probe cost on the minimal neuron set against the oracle probe.

    Parameters
    ----------
    cost : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``cost``, with columns ``model``,
        ``dataset``, ``features``, ``probe``, ``neurons``, ``fit_s``, ``predict_s``, ``params``,
        ``feature_mb``, ``accuracy``.

    Returns
    -------
    tuple
        ``(df, columns, rename, digits)``, the arguments of :func:`diffred.reader_table`.
    """
    return (with_task(cost), ["task", "probe", "neurons", "fit_s", "predict_s", "params",
                              "feature_mb", "accuracy"],
            {"fit_s": "fit (s)", "predict_s": "predict (s)", "feature_mb": "features (MB)",
             "accuracy": "test acc."}, 3)


def closing_table(summary: pd.DataFrame, sweep: pd.DataFrame, delta=(1, 1),
                  c: float = 0.3) -> tuple:
    """Table 2.7: per task at one δ pair, the oracle, majority rate and minimal set, beside the
    per-task redundancy at clustering threshold ``c`` and the retrained probe's accuracy.

    Parameters
    ----------
    summary : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``summary``, with columns ``model``,
        ``dataset``, ``features``, ``delta_layer``, ``delta_neuron``, ``oracle_accuracy``,
        ``majority_dev_accuracy``, ``near_chance``, ``minimal_pct``, ``minimal_accuracy``,
        ``pct_of_oracle``.
    sweep : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``sweep``, with columns ``model``,
        ``dataset``, ``features``, ``threshold``, ``pct_redundant``, ``accuracy``, ``corr_rows``.
    delta : pair of float, default (1, 1)
        ``(δ_L, δ_N)`` of the summary rows shown.
    c : float, default 0.3
        Clustering threshold of the sweep rows joined (tasks without a sweep show "–").

    Returns
    -------
    tuple
        ``(df, columns, rename, digits)``, the arguments of :func:`diffred.reader_table`.
    """
    closing = summary[(summary.delta_layer == delta[0]) & (summary.delta_neuron == delta[1])].merge(
        sweep[np.isclose(sweep.threshold, c)][["model", "dataset", "features", "pct_redundant",
                                               "accuracy", "corr_rows"]].rename(
            columns={"accuracy": "accuracy_at_c", "corr_rows": "cluster_rows"}),
        how="left")
    return (with_task(closing),
            ["task", "oracle_accuracy", "majority_dev_accuracy", "near_chance", "minimal_pct",
             "minimal_accuracy", "pct_of_oracle", "pct_redundant", "accuracy_at_c", "cluster_rows"],
            {"oracle_accuracy": "oracle acc.", "majority_dev_accuracy": "majority dev",
             "near_chance": "near chance (dev)", "minimal_pct": "minimal % of neurons",
             "minimal_accuracy": "minimal acc.", "pct_of_oracle": "% of oracle",
             "pct_redundant": f"% redundant (c={c:g})", "accuracy_at_c": f"acc. at c={c:g}",
             "cluster_rows": "rows clustered"}, 3)


# ============================================================================ findings
def findings(redundancy: pd.DataFrame, summary: pd.DataFrame, sweep: pd.DataFrame,
             threshold: float, delta, quick: bool = False,
             comparison: pd.DataFrame | None = None) -> str:
    """"What this chapter found": one paragraph of Markdown from this run's tables.

    Parameters
    ----------
    redundancy : DataFrame
        :func:`diffred.studies.neurons.runs.general_tables` curves of every model, with columns
        ``model``, ``threshold``, ``pct_redundant``, ``neurons``, ``rows``.
    summary : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``summary``, with columns ``model``,
        ``dataset``, ``features``, ``delta_layer``, ``delta_neuron``, ``near_chance``,
        ``minimal_pct``, ``pct_of_oracle``, ``delta_resolved`` (and ``finetuned_accuracy`` when a
        run was fine-tuned).
    sweep : DataFrame
        :func:`diffred.studies.neurons.runs.run_tasks` ``sweep``, with columns ``model``,
        ``dataset``, ``features``, ``threshold``, ``pct_redundant``, ``accuracy``.
    threshold : float
        The clustering threshold c reported (general redundancy: the nearest one measured).
    delta : pair of float
        ``(δ_L, δ_N)`` of the summary rows reported.
    quick : bool, default False
        Smoke-test scale: a sentence says these numbers are not the book's.
    comparison : DataFrame, optional
        :func:`diffred.studies.neurons.paper.paper_vs_run`: its verdicts close the paragraph.

    Returns
    -------
    str
        Sentences joined by spaces: general redundancy per model, the per-task range at
        ``threshold`` and the minimal sets over the tasks with usable signal, the near-chance
        tasks left out, the fine-tuned models' own test accuracy, and the abstract's claims'
        verdicts.
    """
    found = []
    for model, g in redundancy.groupby("model", sort=False):
        at = g.iloc[(g.threshold - threshold).abs().argsort().iloc[0]]
        found.append(f"At clustering threshold c = {at.threshold:g}, {at.pct_redundant:.0f}% of "
                     f"{model}'s {int(at.neurons)} neurons are redundant on {int(at.rows)} words "
                     f"(the paper's abstract: {CLAIMS['general_pct_redundant']:g}% for "
                     f"BERT-base and XLNet-base).")
    at_c = usable_sweep(sweep[np.isclose(sweep.threshold, threshold)], summary)
    if len(at_c):
        found.append(f"Clustered on each task's own data (tasks with usable signal), "
                     f"{at_c.pct_redundant.min():.0f}–"
                     f"{at_c.pct_redundant.max():.0f}% are redundant at c = {threshold:g}, with "
                     f"the retrained probe at {at_c.accuracy.min():.3f}–"
                     f"{at_c.accuracy.max():.3f} test accuracy.")
    first = summary[(summary.delta_layer == delta[0]) & (summary.delta_neuron == delta[1])]
    ok = usable(first)
    if len(ok):
        found.append(f"For the {len(ok)} of {len(first)} model × task × feature rows with usable "
                     f"signal at δ = ({delta[0]:g}, {delta[1]:g}), the minimal "
                     f"neuron set holds {ok.minimal_pct.min():.2g}–{ok.minimal_pct.max():.2g}% of "
                     f"all neurons and reaches {ok.pct_of_oracle.min():.0f}–"
                     f"{ok.pct_of_oracle.max():.0f}% of the oracle's test accuracy; the δ_N "
                     f"margin exceeds the dev standard error in {int(ok.delta_resolved.sum())} "
                     f"of them.")
    if len(first) > len(ok):
        near = first[first.near_chance.astype(bool)]
        found.append("Near chance (left out): " + ", ".join(
            f"{r.dataset} ({r.features})" for r in near.itertuples()) + ".")
    tuned = first[first.features.str.startswith("fine-tuned")]
    if len(tuned) and "finetuned_accuracy" in tuned:
        found.append("Fine-tuned on a subset, the models themselves reach " + ", ".join(
            f"{r.finetuned_accuracy:.3f} on {r.dataset}" for r in tuned.itertuples()) + " (test).")
    if comparison is not None and len(comparison):
        found.append("The abstract's claims, each by its declared rule on the paper's protocol "
                     "rows (95% intervals over tasks): " + "; ".join(
                         f"{claim.split(')')[0]}) " + ", ".join(
                             f"{r.model} **{r.verdict}**" for r in g.itertuples())
                         for claim, g in comparison.groupby("claim", sort=False)) + ".")
    if quick:
        found.append("*(Smoke-test scale: `quick = True`; these numbers are not the book's.)*")
    return " ".join(found)
