"""Chapter 1's figures (Altair), reader tables, computed prose and closing note (Markdown),
from the tables of :mod:`diffred.studies.diffuse.method`.  Presentation only: nothing here
computes a number the tables lack."""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.core.display import interval, reader_table
from diffred.studies.diffuse.paper import CLAIMS, ICLR_TABLE, NEURIPS

UNIT_TITLES = {"neurons": "neurons (random subsets)",
               "directions": "directions (PCA, random projections)"}


def accuracy_chart(curve: pd.DataFrame, facet_row: str = "model", facet_column: str = "dataset"):
    """Accuracy vs fraction kept (log x), one line per method, ±1 std band over seeds."""
    from diffred.core.plots import alt
    data = curve[curve["method"] != "full"].assign(
        lo=lambda d: d["accuracy"] - d["accuracy_std"], hi=lambda d: d["accuracy"] + d["accuracy_std"])
    # a short title: it is repeated under every panel
    x = alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction kept")
    color = alt.Color("method:N", title="subset / baseline", legend=alt.Legend(orient="bottom"))
    band = alt.Chart().mark_area(opacity=0.25).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    line = alt.Chart().mark_line(point=True).encode(
        x=x, y=alt.Y("accuracy:Q", title="test accuracy"), color=color,
        tooltip=["model", "dataset", "method", "fraction", "k", alt.Tooltip("accuracy", format=".3f")])
    # narrow panels: four datasets side by side fit the book's content column (676 px)
    return alt.layer(band, line, data=data).properties(width=105, height=115).facet(
        row=alt.Row(f"{facet_row}:N", title=None),
        column=alt.Column(f"{facet_column}:N", title=None))


def cka_chart(cka: pd.DataFrame):
    """Unbiased CKA(random subset, full layer) vs subset size, per backbone (this run only:
    the paper's CKA figures give no values that could be sourced)."""
    from diffred.core.plots import alt
    data = cka.groupby(["model", "size"])["cka"].agg(["mean", "std"]).reset_index()
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("size:Q", scale=alt.Scale(type="log", base=2), title="neurons in random subset"),
        y=alt.Y("mean:Q", title="unbiased linear CKA with full layer"),
        color=alt.Color("model:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["model", "size", alt.Tooltip("mean", format=".3f")],
    ).properties(width=440, height=240, title="CKA of random subsets with the full layer (CIFAR-10)")


def pareto_chart(points: pd.DataFrame):
    """Accuracy ratio vs fraction kept for every task, neurons and directions in separate
    panels (each with its own per-task Pareto frontier, drawn as a line)."""
    from diffred.core.plots import alt
    data = points[points["method"] != "full"].assign(
        panel=lambda d: d["unit"].map(UNIT_TITLES))
    x = alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of the layer's width kept")
    y = alt.Y("ratio:Q", title="accuracy / full-layer accuracy", scale=alt.Scale(zero=False))
    dots = alt.Chart().mark_point(opacity=0.35, size=25).encode(
        x=x, y=y, color=alt.Color("dataset:N", legend=alt.Legend(orient="bottom")),
        shape=alt.Shape("method:N", legend=alt.Legend(orient="bottom")),
        tooltip=["dataset", "model", "layer", "method", "fraction", alt.Tooltip("ratio", format=".3f")])
    front = alt.Chart().mark_line(strokeWidth=2.5).encode(x=x, y=y, color="dataset:N").transform_filter(
        "datum.on_frontier")
    return alt.layer(dots, front, data=data).properties(width=205, height=240).facet(
        column=alt.Column("panel:N", title=None)).configure_legend(orient="bottom", columns=3)


def class_cost_chart(cost: pd.DataFrame):
    """Unevenness (worst-class minus mean-class drop) vs fraction kept, with the resampling
    null (dashed: its 95% quantile) per dataset and backbone."""
    from diffred.core.plots import alt
    x = alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of neurons")
    color = alt.Color("model:N", legend=alt.Legend(orient="bottom"))
    line = alt.Chart().mark_line(point=True).encode(
        x=x, y=alt.Y("unevenness:Q", title="worst − mean class drop"), color=color,
        tooltip=["model", "dataset", "fraction", alt.Tooltip("unevenness", format=".3f"),
                 alt.Tooltip("null", format=".3f"), "worst_class"])
    null = alt.Chart().mark_line(strokeDash=[4, 3]).encode(x=x, y="null:Q", color=color)
    # three panels a row: the six datasets in two rows fit the content column
    return alt.layer(line, null, data=cost).properties(width=160, height=120).facet(
        facet=alt.Facet("dataset:N", title=None), columns=3)


def layer_chart(dr: pd.DataFrame, delta: float = 0.9):
    """DR(δ) of intermediate stages (flattened and pooled) vs the penultimate layer."""
    from diffred.core.plots import alt
    # Vega-Lite reads "." in a field name as nested access: "DR(0.9)" would plot nothing
    data = dr.rename(columns={f"DR({delta:g})": "dr"})
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("layer:N", sort=None, title=None), y=alt.Y("dr:Q", title=f"DR({delta:g})"),
        color=alt.Color("layer:N", legend=None), column=alt.Column("dataset:N", title=None),
        tooltip=["model", "layer", "dim", alt.Tooltip("dr:Q", title=f"DR({delta:g})"),
                 alt.Tooltip("full_accuracy", format=".3f")],
    ).properties(width=110, height=150)


def layer_figure(dr: pd.DataFrame, delta: float = 0.9):
    """:func:`layer_chart` of ``dr``, or, when no stage was probed (``dr`` empty), a line of
    Markdown that says so (a glued figure needs an output)."""
    if len(dr):
        return layer_chart(dr, delta)
    from IPython.display import Markdown
    return Markdown("*No intermediate stage was probed in this run (`layer_models` is empty).*")


# --------------------------------------------------------------------------- reader tables
#: headers of the gap columns every reader table shares
GAP_LABELS = {"n_train": "N train", "full_accuracy": "full acc.", "gap": "gap",
              "gap_at_20pct": "gap at 20%", "interval": "95% interval",
              "gap_points": "points", "converged": "converged"}


def with_interval(table: pd.DataFrame, lo: str = "gap_lo", hi: str = "gap_hi",
                  digits: int = 3) -> pd.DataFrame:
    """``table`` with an ``interval`` column "[lo, hi]" (one cell, kept on one line; "–"
    without an interval), so a reader table spends one column on it."""
    def cell(a, b):
        return interval(None if pd.isna(a) else a, None if pd.isna(b) else b, f".{digits}f",
                        missing="–", sep=",\u00a0")
    missing = pd.Series(np.nan, index=table.index)
    return table.assign(interval=[cell(a, b) for a, b in zip(table.get(lo, missing),
                                                              table.get(hi, missing))])


def _converged_if_short(columns: list[str], table: pd.DataFrame) -> list[str]:
    """``columns`` without ``converged`` when every probe of ``table`` converged (the column
    is shown only when a share is below 100%)."""
    short = "converged" in table and (table["converged"].dropna() < 1).any()
    return [c for c in columns if c != "converged" or short]


def learning_curve_table(lc: pd.DataFrame):
    """Reader's cut of :func:`~diffred.studies.diffuse.method.learning_curve`.

    Parameters
    ----------
    lc : DataFrame
        Columns model, n_train, fraction, full_accuracy, gap, gap_lo, gap_hi, gap_points,
        converged (others are left out).

    Returns
    -------
    Styler
        Columns model, N train, fraction, full acc., gap (relative), its 95% interval (one
        cell), points (the gap in accuracy points) and, when a share is below 100%,
        converged; 3 decimals.
    """
    cols = ["model", "n_train", "fraction", "full_accuracy", "gap", "interval", "gap_points",
            "converged"]
    return reader_table(with_interval(lc), _converged_if_short(cols, lc), GAP_LABELS)


def redundancy_table(dr: pd.DataFrame, deltas):
    """Reader's cut of :func:`~diffred.studies.diffuse.method.dr_table`: the last layer.

    Parameters
    ----------
    dr : DataFrame
        Columns model, dataset, layer, dim, full_accuracy, ``DR(δ)`` per δ, gap_at_20pct,
        gap_lo, gap_hi, converged; only rows with ``layer == "penultimate"`` are shown.
    deltas : list of float
        The δ whose ``DR(δ)`` columns are shown.

    Returns
    -------
    Styler
        Columns model, dataset, dim, full acc., DR(δ)..., gap at 20%, its 95% interval and,
        when a share is below 100%, converged; 2 decimals.
    """
    pen = with_interval(dr[dr.layer == "penultimate"], digits=2)
    cols = ["model", "dataset", "dim", "full_accuracy", *[f"DR({d:g})" for d in deltas],
            "gap_at_20pct", "interval", "converged"]
    return reader_table(pen, _converged_if_short(cols, pen), GAP_LABELS, 2)


def class_cost_table(cost: pd.DataFrame, fractions=(0.01, 0.05, 0.2)):
    """Reader's cut of :func:`~diffred.studies.diffuse.method.class_cost`: the last layer at
    a few fractions.

    Parameters
    ----------
    cost : DataFrame
        Columns model, dataset, layer, fraction, mean_class_drop, worst_class_drop,
        unevenness, unevenness_ci95, null, uneven, worst_class.
    fractions : sequence of float
        The fractions shown (rows with ``layer == "penultimate"`` only).

    Returns
    -------
    Styler
        Columns model, dataset, fraction, mean-class drop, worst-class drop, unevenness,
        ± CI, null 95%, uneven, worst class; 3 decimals.
    """
    return reader_table(
        cost[(cost.layer == "penultimate") & cost.fraction.isin(list(fractions))],
        ["model", "dataset", "fraction", "mean_class_drop", "worst_class_drop", "unevenness",
         "unevenness_ci95", "null", "uneven", "worst_class"],
        {"mean_class_drop": "mean-class drop", "worst_class_drop": "worst-class drop",
         "unevenness_ci95": "± CI", "null": "null 95%", "worst_class": "worst class"})


def layer_table(layer_dr: pd.DataFrame, deltas):
    """Reader's cut of :func:`~diffred.studies.diffuse.runs.layer_dr_table`.

    Parameters
    ----------
    layer_dr : DataFrame
        Columns model, dataset, layer, dim, full_accuracy, ``DR(δ)`` per δ, gap_at_20pct,
        converged.
    deltas : list of float
        The δ whose ``DR(δ)`` columns are shown.

    Returns
    -------
    Styler
        Columns model, dataset, layer, dim, full acc., DR(δ)..., gap at 20% and, when a share
        is below 100%, converged; 2 decimals.
    """
    cols = ["model", "dataset", "layer", "dim", "full_accuracy",
            *[f"DR({d:g})" for d in deltas], "gap_at_20pct", "converged"]
    return reader_table(layer_dr, _converged_if_short(cols, layer_dr), GAP_LABELS, 2)


def _images(n) -> str:
    return "?" if pd.isna(n) else f"{int(n):,}"


def with_deviations(comparison: pd.DataFrame, resolution: int | None) -> pd.DataFrame:
    """:func:`~diffred.studies.diffuse.paper.paper_comparison` with a ``deviation`` column:
    how this run's protocol differs from the paper's, per row.

    Parameters
    ----------
    comparison : DataFrame
        Columns quantity, paper_model, paper, model, n_train, n_test, this_run, lo, hi,
        points, verdict, source.
    resolution : int or None
        Input resolution of this run (None: native).

    Returns
    -------
    DataFrame
        A copy of ``comparison`` with ``deviation`` (str) added: the row's training and test
        images, resolution and probe for the "gap at ..." rows, the backbone and DR reading
        for the DR rows.
    """
    out = comparison.copy()
    out["deviation"] = [
        f"{_images(r.n_train)} train / {_images(r.n_test)} test images, "
        f"{resolution or 'native'} px, L-BFGS probe on standardised features (paper: "
        f"ResNet-50, 50,000 / 10,000 images, 224 px, SGD with augmentation)"
        if r.quantity.startswith("gap") else
        "different backbone (paper row: its own model); same grid and 5 seeds; DR by the "
        "book's threshold reading" for r in out.itertuples()]
    return out


def comparison_table(comparison: pd.DataFrame):
    """Reader's cut of :func:`with_deviations`.

    Parameters
    ----------
    comparison : DataFrame
        Columns quantity, paper_model, paper, model, this_run, lo, hi, points, verdict,
        deviation (source, n_train and n_test are left out: the deviation names the images,
        the saved table has them all).

    Returns
    -------
    Styler
        Columns quantity, paper's model, paper, model, this run, 95% interval, points,
        verdict, deviation; 3 decimals.
    """
    return reader_table(with_interval(comparison, "lo", "hi"),
                        ["quantity", "paper_model", "paper", "model", "this_run", "interval",
                         "points", "verdict", "deviation"],
                        {"paper_model": "paper's model", "this_run": "this run",
                         "interval": "95% interval"})


# --------------------------------------------------------------------------- closing note
def _gap_text(gap, lo, hi, points) -> str:
    """'9.2% [8.1, 10.3] of the full accuracy (8.4 points)': a relative gap, its interval
    and the gap in accuracy points."""
    return (f"{100 * gap:.1f}% {interval(lo, hi, '.1f', 100, missing='(no interval)')} of the "
            f"full accuracy ({100 * points:.1f} points)")


def _fmt(v, spec=".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _md_table(df: pd.DataFrame, spec=".2f") -> list[str]:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, spec) if isinstance(v, (float, np.floating))
                                       else str(v) for v in row) + " |")
    return lines


def closing_note(comparison: pd.DataFrame, side: pd.DataFrame, lc: pd.DataFrame | None = None,
                 layer_dr: pd.DataFrame | None = None) -> str:
    """Markdown: the 20%-gap on CIFAR-10 per backbone against the paper's bound, the
    learning-curve table, the δ = 0.9 table next to the paper's, and flattened vs pooled
    middle-layer DR(0.9)."""
    claim = CLAIMS.iloc[0]
    gaps = comparison[comparison["quantity"].str.startswith("gap at")]
    lines = [f"**Gap at {claim.fraction:.0%} of neurons on {claim.dataset}** — paper: within "
             f"{claim.bound:.0%} for {claim.paper_model} ({NEURIPS}, Abstract). This run, at "
             "each backbone's largest training set, relative gap with its 95% paired-bootstrap "
             "interval (test images and subsets resampled):", ""]
    for r in gaps.itertuples():
        said = r.verdict if r.verdict in ("within", "outside") else "inconclusive against"
        lines.append(f"- {r.model} ({_images(r.n_train)} training images): "
                     f"{_gap_text(r.this_run, r.lo, r.hi, r.points)} — {said} the "
                     f"paper's {r.paper:.0%}")
    if lc is not None and len(lc):
        t = with_interval(lc[np.isclose(lc["fraction"], 0.2)])[
            ["model", "n_train", "full_accuracy", "gap", "interval", "gap_points"]]
        lines += ["", f"**Learning curve** ({lc['dataset'].iloc[0]}, relative gap at 20% of "
                  "neurons vs training-set size):", "",
                  *_md_table(t.rename(columns=GAP_LABELS), ".3f")]
    lines += ["", f"**DR(0.9), random subsets of the last layer** — paper rows: {ICLR_TABLE}; "
              "this run: threshold reading of DR (see Method):", "", *_md_table(side)]
    if layer_dr is not None and len(layer_dr):
        t = layer_dr.pivot_table(index=["model", "layer"], columns="dataset", values="DR(0.9)",
                                 sort=False)
        dims = layer_dr.groupby(["model", "layer"], sort=False)["dim"].first()
        t.insert(0, "dim", dims.reindex(t.index).astype(int).astype(str))
        lines += ["", "**Middle layers, DR(0.9)** (`:flat` = whole C×H×W map as the official "
                  "code; plain name = global-average-pooled, the book's earlier variant):", "",
                  *_md_table(t.reset_index())]
    return "\n".join(lines)


# --------------------------------------------------------------------------- computed prose
def fit_summary(runs: pd.DataFrame) -> str:
    """One line: how many probes, in how many batched sweeps, and their fitting time.

    Parameters
    ----------
    runs : DataFrame
        Probe rows with columns model, dataset, layer, probe_seconds (the wall time of the
        row's whole sweep, the same on every row of one sweep).

    Returns
    -------
    str
        "<probes> probes in <sweeps> batched sweeps, <seconds> s of probe fitting".
    """
    fits = runs.drop_duplicates(["model", "dataset", "layer", "probe_seconds"])
    return (f"{len(runs)} probes in {len(fits)} batched sweeps, "
            f"{fits.probe_seconds.sum():.0f} s of probe fitting")


def _nearest(values: pd.Series, target: float) -> float:
    return float(values.iloc[(values - target).abs().argsort().iloc[0]])


def cost_text(cost: pd.DataFrame, fractions=(0.05, 0.2)) -> str:
    """One sentence per fraction (the grid's nearest): in how many backbone × dataset pairs
    the unevenness of the drop is above its resampling null, and the largest case."""
    pc = cost[cost["layer"] == "penultimate"].dropna(subset=["null"])
    if not len(pc):
        return "No per-class null could be computed (test counts missing)."
    out = []
    for target in fractions:
        f = _nearest(pc["fraction"], target)
        at = pc[np.isclose(pc["fraction"], f)]
        top = at.loc[(at["unevenness"] - at["null"]).idxmax()]
        out.append(f"At {100 * f:g}% of the neurons the unevenness is above the 95% null in "
                   f"{int(at['uneven'].sum())} of {len(at)} backbone × dataset pairs (largest "
                   f"excess: {top.model} on {top.dataset}, {100 * top.unevenness:.1f} points "
                   f"against a null of {100 * top.null:.1f}; worst class usually "
                   f"'{top.worst_class}').")
    return " ".join(out)


def findings(dr: pd.DataFrame, comparison: pd.DataFrame, scale: pd.DataFrame,
             cost: pd.DataFrame, layer_dr: pd.DataFrame, delta: float = 0.9,
             quick: bool = False) -> str:
    """The 'What this chapter found' box, every number from this run's tables."""
    pen = dr[dr["layer"] == "penultimate"]
    col = f"DR({delta:g})"
    out = []
    if col in pen.columns and len(pen):
        hi, lo = pen.loc[pen[col].idxmax()], pen.loc[pen[col].idxmin()]
        out.append(f"On {len(pen)} backbone × dataset pairs, random subsets of the last layer "
                   f"keep {100 * delta:.0f}% of the full layer's accuracy with "
                   f"{100 * (1 - hi[col]):.1f}% of the neurons at best ({hi.model} on "
                   f"{hi.dataset}) and need {100 * (1 - lo[col]):.1f}% at worst ({lo.model} on "
                   f"{lo.dataset}).")
    gaps = comparison[comparison["quantity"].str.startswith("gap at")]
    if len(gaps):
        parts = [f"{r.model} at {_images(r.n_train)} training images "
                 f"{_gap_text(r.this_run, r.lo, r.hi, r.points)}: {r.verdict}"
                 for r in gaps.itertuples()]
        out.append(f"With 20% of the neurons on CIFAR-10 the gap to the full layer is "
                   f"{'; '.join(parts)} — against the paper's 'within 5%' for ResNet-50.")
    for r in scale.itertuples():
        said = {"shrinks": "it shrinks", "grows": "it grows",
                "no clear change": "the two intervals overlap: no clear change"}
        out.append(f"From {r.n_small:,} to {r.n_large:,} training images the 20% gap of "
                   f"{r.model} goes from {100 * r.gap_small:.1f}% "
                   f"{interval(r.gap_small_lo, r.gap_small_hi, '.1f', 100, missing='–')} "
                   f"to {100 * r.gap_large:.1f}% "
                   f"{interval(r.gap_large_lo, r.gap_large_hi, '.1f', 100, missing='–')}: "
                   f"{said.get(r.verdict, r.verdict)}.")
    pc = cost[cost["layer"] == "penultimate"].dropna(subset=["null"])
    if len(pc):
        f = _nearest(pc["fraction"], 0.05)
        at = pc[np.isclose(pc["fraction"], f)]
        out.append(f"At {100 * f:g}% of the neurons the class cost is more uneven than test-set "
                   f"noise explains in {int(at['uneven'].sum())} of {len(at)} pairs.")
    flat = layer_dr[layer_dr["layer"].str.endswith(":flat")] if len(layer_dr) else layer_dr
    if len(flat) and col in flat.columns:
        pooled = layer_dr.set_index(["model", "dataset", "layer"])[col]
        bits = []
        for _, r in flat.iterrows():
            base = r["layer"].removesuffix(":flat")
            p = pooled.get((r["model"], r["dataset"], base))
            bits.append(f"{r['layer']} {r[col]:.2f}" + (f" vs pooled {p:.2f}" if p is not None
                                                        else ""))
        out.append(f"Middle layers, DR({delta:g}): " + "; ".join(bits) + ".")
    sweeps = pd.concat([dr, layer_dr]).drop_duplicates(["model", "dataset", "layer"])
    short = sweeps[sweeps.get("converged", pd.Series(dtype=float)) < 1]
    if len(short):
        worst = short.loc[short["converged"].idxmin()]
        out.append(f"In {len(short)} of {len(sweeps)} layers some probes stopped at the "
                   f"iteration cap before converging (fewest converged: "
                   f"{100 * worst.converged:.0f}%, {worst.model} on {worst.dataset}, "
                   f"{worst.layer}).")
    if quick:
        out.append("*(Smoke-test scale: `quick = True`; these numbers are not the book's.)*")
    return " ".join(out)
