"""Chapter 2's figures and reader tables, from the tables of :mod:`diffred.studies.neurons.method` and
:mod:`diffred.studies.neurons.runs`.  Presentation only: nothing here computes a number the tables lack
(and editing it invalidates no cached analysis)."""
from __future__ import annotations

import pandas as pd


def with_task(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``task`` column "model · dataset · features" (one wrapping text column
    instead of three in a reader table)."""
    return df.assign(task=df.model + " · " + df.dataset + " · " + df.features)


def sweep_view(sweep: pd.DataFrame) -> pd.DataFrame:
    """The per-task clustering sweep as one row per task and one column per threshold c,
    each cell "% redundant · test accuracy" (threshold −1: no clustering)."""
    rows = with_task(sweep).assign(cell=[f"{p:.1f}% · {a:.3f}" for p, a in
                                         zip(sweep.pct_redundant, sweep.test_acc)])
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
        y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", title="selection", legend=alt.Legend(orient="bottom")),
        strokeDash=alt.StrokeDash("selected_layer:N", title="layers 0..l",
                                  legend=alt.Legend(orient="bottom")),
        tooltip=["model", "dataset", "selected_layer", "method", "k",
                 alt.Tooltip("pct:Q", format=".2f"), alt.Tooltip("test_acc:Q", format=".3f")]
    ).properties(width=140, height=130).facet(   # three panels a row fit the content column
        facet=alt.Facet("panel:N", title=None, header=alt.Header(labelLimit=190)), columns=3
    ).resolve_scale(y="independent").properties(title="Minimal neuron sets: ranked vs random")
