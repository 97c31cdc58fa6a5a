"""Chapter 4's figures (Altair), reader tables and computed prose, from the tables of
:mod:`~diffred.studies.transfer.method`, :mod:`~diffred.studies.transfer.basin` and
:mod:`~diffred.studies.transfer.paper`.  Presentation only: nothing here computes a number the
tables lack (pair summaries come from :func:`~diffred.studies.transfer.basin.pair_summary`,
the closing summary from :func:`~diffred.studies.transfer.method.closing_summary`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.core.display import interval
from diffred.studies.transfer.basin import pair_summary


# --------------------------------------------------------------------------- reader tables
def lr_selection_table(selection: pd.DataFrame) -> pd.DataFrame:
    """Reader table: validation accuracy per rate (columns), per target and init; the chosen
    rate marked with '◀', and '◀ edge' where it is the grid's smallest or largest rate (a
    better one may lie outside the grid)."""
    low, high = selection.lr.min(), selection.lr.max()
    cell = selection.apply(lambda r: f"{r.val_accuracy:.3f}" + (
        (" ◀ edge" if r.lr in (low, high) else " ◀") if r.chosen else ""), axis=1)
    return (selection.assign(cell=cell)
            .pivot_table(index=["dataset", "init"], columns="lr", values="cell",
                         aggfunc="first", sort=False).rename(columns=lambda lr: f"lr {lr:g}")
            .reset_index().rename(columns={"dataset": "target"}))


def pair_table(basin: dict, digits: int = 3) -> pd.DataFrame:
    """:func:`~diffred.studies.transfer.basin.pair_summary` for the page: one column per
    quantity, each cell "mean [95% seed-bootstrap interval] (n pairs)" ("–" where not
    measured; no interval with < 3 seeds or one pair)."""
    summary = pair_summary(basin)

    def cell(row, name):
        m, lo, hi, n = (row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi"),
                        row.get(f"{name}_n"))
        if m is None or not np.isfinite(m):
            return "–"
        spec = f".{digits}g" if name == "l2_distance" else f".{digits}f"  # ℓ2: significant digits
        ci = "" if lo is None else (" " + interval(lo, hi, spec, missing="")).rstrip()
        return f"{m:{spec}}{ci} ({int(n)})"
    columns = {"CKA (mean over stages)": "cka", "ℓ2 distance": "l2_distance",
               "barrier (BN re-estimated)": "barrier",
               "barrier (BN interpolated)": "barrier_bn_interpolated"}
    return pd.DataFrame([{"pair": r["pair"], **{label: cell(r, name)
                                                for label, name in columns.items()}}
                         for r in summary.to_dict("records")])


def reader_findings(comparison: pd.DataFrame) -> pd.DataFrame:
    """:func:`~diffred.studies.transfer.paper.paper_vs_run` for the page: finding, the paper's
    claim with its source, and per arm "verdict — measured" in one column."""
    arms = [c[:-len(": reproduced")] for c in comparison.columns if c.endswith(": reproduced")]
    paper = [c for c in comparison.columns if c.startswith("paper")][0]
    return pd.DataFrame({"finding": comparison.finding,
                         "paper": comparison[paper] + " (" + comparison.source + ")",
                         **{arm: [m if v == "—" else f"{v} — {m}" for v, m in
                                  zip(comparison[f"{arm}: reproduced"],
                                      comparison[f"{arm}: measured"])] for arm in arms}})


# --------------------------------------------------------------------------- the page's text
def source_accuracy_text(run, train_set, test_set) -> str:
    """The source model's test accuracy as the page states it.

    Parameters
    ----------
    run : Run
        The pretraining run.
    train_set, test_set : ImageSet
        Its training and test images.

    Returns
    -------
    str
        ``"<accuracy, %.1f> (on <n> test images, <n> training images)"``.
    """
    return (f"{run.accuracy:.1%} (on {len(test_set)} test images, "
            f"{len(train_set)} training images)")


def source_curve_table(run) -> pd.DataFrame:
    """The pretraining curve for the page.

    Parameters
    ----------
    run : Run
        The pretraining run; ``run.curve`` has columns epoch, train_loss, accuracy.

    Returns
    -------
    DataFrame
        One row per epoch: epoch (int), "train loss", "test accuracy".
    """
    return run.curve.astype({"epoch": int}).rename(
        columns={"train_loss": "train loss", "accuracy": "test accuracy"})


def reader_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The closing summary for the page: its columns renamed for readers.

    Parameters
    ----------
    summary : DataFrame
        From :func:`~diffred.studies.transfer.method.closing_summary`.

    Returns
    -------
    DataFrame
        Columns arm, rates, target, init, lr, "test accuracy", "± 95%", "epochs to 90%",
        seeds.
    """
    return summary.rename(columns={"lr_rule": "rates", "dataset": "target",
                                   "accuracy": "test accuracy", "ci95": "± 95%",
                                   "epochs_to_90": "epochs to 90%"})


def findings_text(accuracy: dict[str, pd.DataFrame], source_accuracy: float,
                  comparison: pd.DataFrame, quick: bool = False) -> str:
    """"What this chapter found" (the top of the page), from this run's tables.

    Parameters
    ----------
    accuracy : dict of str to DataFrame
        {arm: accuracy table} (columns lr_rule, dataset, init, accuracy), in the order the
        sentences name the arms.
    source_accuracy : float
        The controlled source model's test accuracy on CIFAR-10.
    comparison : DataFrame
        :func:`~diffred.studies.transfer.paper.paper_vs_run` (columns finding and
        "<arm>: reproduced" per arm of ``accuracy``).
    quick : bool
        Add the smoke-test warning.

    Returns
    -------
    str
        Markdown: one sentence on P-T wins per arm, one on the source model, one on the
        verdicts per arm.
    """
    found = []
    for arm, a in accuracy.items():
        a = a[a.lr_rule == "selected"]
        means = a.groupby(["dataset", "init"]).accuracy.mean().unstack()
        wins = int((means["P-T"] > means["RI-T"]).sum())
        found.append(f"In the {arm} arm, fine-tuning from pretrained weights (P-T) has the higher "
                     f"mean test accuracy on {wins} of {len(means)} target(s).")
    found.append(f"The controlled source model reaches {source_accuracy:.1%} on CIFAR-10.")
    for arm in accuracy:
        verdicts = comparison[f"{arm}: reproduced"]
        checked = comparison[verdicts != "—"]
        said = {v: checked[checked[f"{arm}: reproduced"] == v].finding.tolist()
                for v in ("yes", "no", "inconclusive")}
        found.append(f"Of the paper's findings checked in the {arm} arm, {len(said['yes'])} of "
                     f"{len(checked)} reproduce"
                     + (f" ({', '.join(said['yes'])})" if said["yes"] else "")
                     + (f", {len(said['no'])} do not ({', '.join(said['no'])})" if said["no"]
                        else "")
                     + f" and {len(said['inconclusive'])} are inconclusive at this scale"
                     + (f" ({', '.join(said['inconclusive'])})." if said["inconclusive"]
                        else "."))
    if quick:
        found.append("*(Smoke-test scale: `quick = True`; these numbers are not the book's.)*")
    return " ".join(found)


# --------------------------------------------------------------------------- charts
def accuracy_chart(table: pd.DataFrame):
    """Bars: final accuracy per target, P-T vs RI-T (points = seeds); one row of panels per
    arm and learning-rate rule, so no bar averages runs of different arms or rates."""
    from diffred.core.plots import alt
    table = table.assign(setting=table["arm"] + ", " + table["lr_rule"] + " rates")
    base = alt.Chart(table).encode(x=alt.X("init:N", title=None), color="init:N")
    bars = base.mark_bar(opacity=0.7).encode(y=alt.Y("mean(accuracy):Q", title="test accuracy"))
    dots = base.mark_point(color="black").encode(y="accuracy:Q", tooltip=["seed", "accuracy"])
    return (bars + dots).properties(width=110, height=150).facet(
        row=alt.Row("setting:N", title=None), column=alt.Column("dataset:N", title=None)
    ).properties(title="Final accuracy")


def curves_chart(curves: pd.DataFrame, color: str = "init"):
    """Test accuracy per epoch (lines per seed), faceted by dataset."""
    from diffred.core.plots import alt
    return alt.Chart(curves).mark_line(point=True).encode(
        x="epoch:Q", y=alt.Y("accuracy:Q", title="test accuracy"),
        color=alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom")), detail="seed:N",
        strokeDash=alt.StrokeDash("init:N", legend=alt.Legend(
            orient="bottom", symbolType="stroke", symbolStrokeWidth=2, symbolSize=400)),
    ).properties(width=170, height=150).facet(column=alt.Column("dataset:N", title=None)
                                             ).properties(title="Training curves")


def block_chart(table: pd.DataFrame):
    """Accuracy (final and after 1 epoch) versus block size, P-T vs RI-T."""
    from diffred.core.plots import alt
    long = table.rename(columns={"accuracy": "final", "accuracy_epoch1": "after epoch 1"}).melt(
        id_vars=["init", "block"], value_vars=["final", "after epoch 1"], var_name="when",
        value_name="accuracy")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("block:Q", scale=alt.Scale(type="log", base=2), title="block size b (px)"),
        y=alt.Y("accuracy:Q", title="test accuracy"), color="init:N",
        strokeDash=alt.StrokeDash("when:N", title=None, legend=alt.Legend(
            symbolType="stroke", symbolStrokeWidth=2, symbolSize=400)),
    ).properties(width=260, height=180, title="Block shuffle: accuracy vs block size")


def checkpoint_chart(table: pd.DataFrame):
    """Downstream accuracy (mean over seeds) and epochs to 90% of final against the
    pretraining checkpoint; dashed: the source model's accuracy; rules: learning-rate drops."""
    from diffred.core.plots import alt
    x = alt.X("checkpoint_epoch:Q", title="pretraining checkpoint (epoch)")
    base = alt.Chart(table).encode(x=x)
    down = base.mark_line(point=True).encode(
        y=alt.Y("mean(accuracy):Q", title="accuracy (solid: downstream)"))
    src = base.mark_line(strokeDash=[4, 3], color="gray").encode(y="mean(source_accuracy):Q")
    drops = alt.Chart(table[table.lr_drop].drop_duplicates("checkpoint_epoch")).mark_rule(
        color="firebrick", strokeDash=[2, 2]).encode(x="checkpoint_epoch:Q")
    speed = base.mark_line(point=True, color="darkorange").encode(
        y=alt.Y("mean(epochs_to_90):Q", title="epochs to 90% of final"))
    return alt.hconcat((down + src + drops).properties(width=230, height=170),
                       (speed + drops).properties(width=170, height=170)).properties(
        title="Fine-tuning from each pretraining checkpoint (red: learning-rate drops)")


def cka_chart(table: pd.DataFrame):
    from diffred.core.plots import alt
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("stage:N", sort=None), y=alt.Y("mean(cka):Q", scale=alt.Scale(domain=[0, 1]),
                                              title="linear CKA (mean over seed pairs)"),
        color=alt.Color("pair:N", legend=alt.Legend(orient="bottom", columns=1)),
    ).properties(width=240, height=170, title="Feature similarity per stage")


def interpolation_chart(table: pd.DataFrame):
    from diffred.core.plots import alt
    if "bn" not in table:
        table = table.assign(bn="re-estimated")
    return alt.Chart(table).mark_line(point=True, size=1).encode(
        x=alt.X("lambda:Q", title="λ"), y=alt.Y("accuracy:Q", title="test accuracy"),
        color=alt.Color("pair:N", legend=alt.Legend(orient="bottom", columns=1)),
        strokeDash=alt.StrokeDash("bn:N", title="BN statistics",
                                  legend=alt.Legend(orient="bottom", columns=1)),
        detail="seeds:N", tooltip=["pair", "seeds", "bn", "lambda", "accuracy", "barrier"],
    ).properties(width=240, height=170, title="Linear interpolation θ(λ)")


def criticality_chart(table: pd.DataFrame):
    from diffred.core.plots import alt
    shown = table.assign(criticality=table.criticality.replace(np.inf, np.nan))
    if "arm" not in shown:
        shown = shown.assign(arm="")
    return alt.Chart(shown).mark_bar().encode(
        x=alt.X("stage:N", sort=None, title=None),
        y=alt.Y("mean(criticality):Q", scale=alt.Scale(type="symlog"),
                title="module criticality μ, mean over runs (symlog)"),
        color="init:N", xOffset="init:N",
        tooltip=["init", "stage", alt.Tooltip("mean(criticality):Q", title="mean μ"),
                 alt.Tooltip("count(criticality):Q", title="runs with a feasible point")],
    ).properties(width=alt.Step(16), height=170).facet(   # one panel per arm: own stages
        column=alt.Column("arm:N", title=None)).resolve_scale(x="independent").properties(
        title="Module criticality (0 = rewindable)")
