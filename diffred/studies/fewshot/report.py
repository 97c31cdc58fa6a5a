"""Chapter 3's reader tables, charts and computed prose, from the tables of
:mod:`diffred.studies.fewshot.method` and the verdicts of :mod:`diffred.studies.fewshot.paper`
(where the paper-vs-run comparison is built too).  Presentation only."""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.core.display import interval
from diffred.studies.fewshot.method import METHODS
from diffred.studies.fewshot.paper import (
    PAPER_FRACTION,
    confounder_counts,
    confounder_enrichment,
    odds_ratio_texts,
)


def _pm(a, ci, signed=False):
    return f"{100 * a:+.1f} ± {100 * ci:.1f}" if signed else f"{100 * a:.1f} ± {100 * ci:.1f}"


def verdict_table(verdict: pd.DataFrame) -> pd.DataFrame:
    """Reader table of :func:`diffred.studies.fewshot.paper.one_percent_verdict`."""
    return pd.DataFrame({
        "backbone": verdict.model, "dataset": verdict.dataset,
        "episodes": verdict.n_way.astype(str) + "-way " + verdict.shots.astype(str) + "-shot",
        f"top {100 * PAPER_FRACTION:g}% (k)": [f"{_pm(a, c)} ({k})" for a, c, k in
                                               zip(verdict.accuracy_small,
                                                   verdict.accuracy_small_ci95, verdict.k)],
        "all dims": [_pm(a, c) for a, c in zip(verdict.accuracy_full, verdict.accuracy_full_ci95)],
        "difference": [_pm(d, c, True) for d, c in zip(verdict.difference,
                                                       verdict.difference_ci95)],
        "90% interval (TOST)": [interval(lo, hi, "+.1f", 100)
                                for lo, hi in zip(verdict.tost_lo, verdict.tost_hi)],
        "interval over": verdict.interval_over, "verdict": verdict.verdict,
        "n": verdict.n_episodes})


def peak_table(peaks: pd.DataFrame) -> pd.DataFrame:
    """Reader table of :func:`diffred.studies.fewshot.paper.curve_peaks` (post hoc)."""
    return pd.DataFrame({
        "backbone": peaks.model, "dataset": peaks.dataset,
        "episodes": peaks.n_way.astype(str) + "-way " + peaks.shots.astype(str) + "-shot",
        "peak at": [f"{100 * f:g}%" for f in peaks.peak_fraction],
        "accuracy": [_pm(a, c) for a, c in zip(peaks.accuracy_peak, peaks.accuracy_peak_ci95)],
        "vs all dims": [_pm(d, c, True) for d, c in zip(peaks.difference, peaks.difference_ci95)],
        "status": peaks.label})


def precursor_table(pre: pd.DataFrame, curves2: pd.DataFrame) -> pd.DataFrame:
    """The precursor's 2-way setting: plain features ('None') vs the oracle re-weighting, and
    the top 1% vs all dimensions, per backbone/dataset/shots (accuracy ± 95% CI in points)."""
    keys = ["model", "dataset", "shots"]
    p = pre.pivot_table(index=keys, columns="method", values=["accuracy", "ci95", "gain",
                                                               "gain_ci95"])
    o = curves2[(curves2.ranking == "oracle")
                & np.isclose(curves2.fraction_requested, PAPER_FRACTION)].set_index(keys)
    out = pd.DataFrame({
        "None (all dims)": [_pm(a, c) for a, c in zip(p["accuracy"]["none"], p["ci95"]["none"])],
        "oracle re-weighting": [_pm(a, c) for a, c in zip(p["accuracy"]["oracle"],
                                                          p["ci95"]["oracle"])],
        "gain": [_pm(a, c, True) for a, c in zip(p["gain"]["oracle"],
                                                 p["gain_ci95"]["oracle"])]}, index=p.index)
    out[f"top {100 * PAPER_FRACTION:g}% vs all"] = [
        _pm(o.diff_full.get(i, np.nan), o.diff_full_ci95.get(i, np.nan), True)
        for i in out.index]
    return out.reset_index().rename(columns={"model": "backbone", "shots": "K"})


def mask_table(masks: pd.DataFrame) -> pd.DataFrame:
    """Wide table: 'acc ± ci (gain ± ci)' in points, one row per backbone/dataset/classifier/K."""
    cell = masks.apply(lambda r: _pm(r.accuracy, r.ci95) + (
        "" if r.method == "no mask" else f" ({_pm(r.gain, r.gain_ci95, True)})"), axis=1)
    wide = masks.assign(cell=cell).pivot_table(
        index=["model", "dataset", "classifier", "shots"], columns="method", values="cell",
        aggfunc="first")
    return wide[[m for m in METHODS if m in wide.columns]]


def closing_summary(verdict5: pd.DataFrame, verdict2: pd.DataFrame,
                    masks: pd.DataFrame) -> pd.DataFrame:
    """Per backbone/dataset: 1-shot accuracy at exactly 1% vs all dimensions, 5-way (4-way on
    4-class data) and 2-way, and the support-estimated soft mask's paired 1-shot gain on report
    episodes (with the selected shrink) for LR and NC."""
    def one_shot(v, label):
        v = v[v.shots == 1].set_index(["model", "dataset"])
        return pd.DataFrame({f"{label} 1%": [_pm(a, c) for a, c in
                                             zip(v.accuracy_small, v.accuracy_small_ci95)],
                             f"{label} all": [_pm(a, c) for a, c in
                                              zip(v.accuracy_full, v.accuracy_full_ci95)],
                             f"{label} verdict": v.verdict}, index=v.index)
    out = one_shot(verdict5, "N-way").join(one_shot(verdict2, "2-way"), how="outer")
    sm = masks[(masks.method == "soft mask (support)") & (masks.shots == 1)]
    for c, g in sm.groupby("classifier"):
        g = g.set_index(["model", "dataset"])
        out[f"soft-mask gain {c.upper()} (shrink {g.shrink.iloc[0]:g})"] = pd.Series(
            [_pm(a, ci, True) for a, ci in zip(g.gain, g.gain_ci95)], index=g.index)
    ways = verdict5[verdict5.shots == 1].set_index(["model", "dataset"]).n_way
    out.insert(0, "N", ways.reindex(out.index))
    return out.reset_index().rename(columns={"model": "backbone"})


# --------------------------------------------------------------------------- charts
def fraction_chart(curves: pd.DataFrame):
    """Accuracy vs fraction of dimensions kept (log x), one colour per K, oracle solid and
    random dashed, faceted by dataset (rows) and backbone (columns)."""
    import altair as alt
    data = curves.assign(accuracy_pct=100 * curves.accuracy, lo=100 * (curves.accuracy - curves.ci95),
                         hi=100 * (curves.accuracy + curves.ci95), K=curves.shots.astype(str))
    base = alt.Chart(data).encode(
        x=alt.X("fraction:Q", scale=alt.Scale(type="log"), title="fraction of dimensions kept"),
        color=alt.Color("K:N", title="shots K", sort=sorted(data.K.unique(), key=int)),
        # stroke symbols: a point symbol would hide the dash that tells the rankings apart
        strokeDash=alt.StrokeDash("ranking:N", title="ranking",
                                  legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2,
                                                    symbolSize=400)))
    lines = base.mark_line(point=True).encode(
        y=alt.Y("accuracy_pct:Q", title="accuracy (%)", scale=alt.Scale(zero=False)),
        tooltip=["model", "dataset", "shots", "ranking", "k",
                 alt.Tooltip("accuracy_pct:Q", format=".1f"), alt.Tooltip("ci95:Q", format=".3f")])
    band = base.mark_errorband().encode(y=alt.Y("lo:Q", title="accuracy (%)"), y2="hi:Q")
    return (band + lines).properties(width=200, height=140).facet(
        row=alt.Row("dataset:N", title=None), column=alt.Column("model:N", title=None)
    ).resolve_scale(y="independent")


def confounder_chart(conf: pd.DataFrame):
    """Within-class variance vs centroid distance per dimension, coloured by the effect of
    dropping it on nearest-centroid accuracy (after Benjamini–Hochberg)."""
    import altair as alt
    data = conf
    title = f"{conf.model.iloc[0]} on {conf.dataset.iloc[0]}, {int(conf.shots.iloc[0])}-shot"
    return alt.Chart(data).mark_circle(size=14, opacity=0.6).encode(
        x=alt.X("within_var:Q", scale=alt.Scale(type="log"), title="within-class variance"),
        y=alt.Y("centroid_dist:Q", scale=alt.Scale(type="log"),
                title="spread of class centroids (2 std)"),
        color=alt.Color("effect:N", scale=alt.Scale(
            domain=["dropping helps", "no clear effect", "dropping hurts"],
            range=["#d62728", "#bbbbbb", "#1f77b4"])),
        tooltip=["dim", alt.Tooltip("delta_accuracy:Q", format=".5f"), "q_value", "within_var",
                 "centroid_dist"],
    ).properties(width=420, height=300, title=title)


def simulation_chart(sim: pd.DataFrame):
    """Simulated nearest-centroid accuracy with all vs informative dimensions, against K."""
    import altair as alt
    long = pd.concat([
        pd.DataFrame({"K": sim.shots, "features": "all dimensions",
                      "accuracy": 100 * sim.accuracy_all, "ci95": 100 * sim.accuracy_all_ci95}),
        pd.DataFrame({"K": sim.shots, "features": "confounders dropped",
                      "accuracy": 100 * sim.accuracy_informative,
                      "ci95": 100 * sim.accuracy_informative_ci95})])
    long = long.assign(lo=long.accuracy - long.ci95, hi=long.accuracy + long.ci95)
    base = alt.Chart(long).encode(x=alt.X("K:Q", scale=alt.Scale(type="log"),
                                          title="shots K (simulated Gaussian model)"),
                                  color=alt.Color("features:N", title=None))
    # one y title for line and band (the band's fields would otherwise join the title)
    return (base.mark_line(point=True).encode(y=alt.Y("accuracy:Q", title="accuracy (%)"))
            + base.mark_errorband().encode(y=alt.Y("lo:Q", title="accuracy (%)"), y2="hi:Q")
            ).properties(width=380, height=200)


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


# --------------------------------------------------------------------------- page tables
#: short column names of :func:`mask_reader_table` (the page is narrow)
MASK_COLUMNS = {"model": "backbone", "classifier": "clf.", "shots": "K",
                "augmented support, no mask": "aug. views", "hard top-k (support)": "hard top-k",
                "soft mask (support)": "soft (support)", "soft mask (oracle)": "soft (oracle)"}


def mask_reader_table(masks: pd.DataFrame) -> pd.DataFrame:
    """:func:`mask_table` with its index as columns and short column names, for the page.

    Parameters
    ----------
    masks : DataFrame
        :func:`diffred.studies.fewshot.method.soft_mask_comparison` rows (report parts).

    Returns
    -------
    DataFrame
        Columns backbone, dataset, clf., K, then one per method present ("no mask",
        "aug. views", "hard top-k", "soft (support)", "soft (oracle)"), each cell
        "acc ± ci (gain ± ci)" in points.
    """
    return mask_table(masks).reset_index().rename(columns=MASK_COLUMNS)


def selection_reader_table(selection_table: pd.DataFrame) -> pd.DataFrame:
    """The selection rule's table (:func:`diffred.studies.fewshot.runs.select_mask_settings`)
    with ``value`` shown as ``candidate``.

    Parameters
    ----------
    selection_table : DataFrame
        Columns setting, value, method scored, mean selection accuracy, chosen,
        cells averaged.

    Returns
    -------
    DataFrame
        The same table, ``value`` renamed ``candidate``.
    """
    return selection_table.rename(columns={"value": "candidate"})


# --------------------------------------------------------------------------- computed prose
def _pts(x, ci=None, signed=True):
    s = f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"
    return s if ci is None else f"{s} ± {100 * ci:.1f}"


def _verdict_counts(v):
    return ", ".join(f"K={k}: {int(g.reproduced.sum())}/{len(g)}" for k, g in v.groupby("shots"))


def _counts(v: pd.DataFrame) -> str:
    """'a recover, b above, c below, d inconclusive' of a verdict table."""
    n = v.verdict.value_counts()
    return ", ".join(f"{int(n.get(k, 0))} {w}" for k, w in
                     (("recovers", "recover"), ("above full", "above"),
                      ("below full", "below"), ("inconclusive", "inconclusive")))


def _first_shot(v: pd.DataFrame) -> pd.DataFrame:
    return v[v.shots == v.shots.min()]


def episodes_note(curves: pd.DataFrame, shots, n_episodes: int, n_episodes_high_shot: int,
                  n_query: int) -> str:
    """The episode budgets of the sweeps and the shot counts a pool could not serve.

    Parameters
    ----------
    curves : DataFrame
        :func:`diffred.studies.fewshot.runs.run_fraction_curves` (columns model, dataset,
        shots used).
    shots : sequence of int
        The shot counts asked for.
    n_episodes, n_episodes_high_shot, n_query : int
        Episodes per 1-shot cell and per cell with K > 1; queries per class.

    Returns
    -------
    str
        Markdown.
    """
    served = curves.groupby(["model", "dataset"]).shots.unique()
    missing = [f"{m}/{d}: K={sorted(set(shots) - set(s))}" for (m, d), s in served.items()
               if set(shots) - set(s)]
    return (f"1-shot cells (and every 2-way cell below) use {n_episodes} episodes, as the "
            f"precursor does; cells with $K>1$ use {n_episodes_high_shot}, because their LR "
            f"fits are several times slower (`benchmarks/fewshot.py` measures episodes/s). "
            f"Shot counts a pool cannot serve ($K$ + {n_query} queries per class) are left "
            f"out: " + ("; ".join(missing) if missing else "none") + ".")


def verdict_text(verdict5: pd.DataFrame) -> str:
    """The 1% verdicts in words: at the fewest shots, and how many cells hold per shots.

    Parameters
    ----------
    verdict5 : DataFrame
        :func:`diffred.studies.fewshot.paper.one_percent_verdict` of the N-way curves
        (columns shots, difference, verdict).

    Returns
    -------
    str
        Markdown.
    """
    one5 = _first_shot(verdict5)
    return (f"At {int(one5.shots.iloc[0])} shot, of {len(one5)} backbone/dataset pairs: "
            f"{_counts(one5)} (mean paired difference {_pts(one5.difference.mean())} points; "
            f"\"recovers\" means within ±{100 * one5.margin.iloc[0]:g} point by two one-sided "
            f"tests). Cells where the claim holds (recovers or above), by shots: "
            f"{_verdict_counts(verdict5)}.")


def fade_text(fade: dict) -> str:
    """"Fades with shots" in words (:func:`diffred.studies.fewshot.paper.fade_contrast`).

    Parameters
    ----------
    fade : dict
        :func:`diffred.studies.fewshot.paper.fade_contrast` (keys slopes, mean, lo, hi,
        n_pairs, verdict).

    Returns
    -------
    str
        Markdown.
    """
    if fade["n_pairs"] == 0:
        return "No pair has two shot counts: the contrast cannot be measured (**inconclusive**)."
    per = "; ".join(f"{r.model}/{r.dataset} {_pts(r.slope)}" for r in fade["slopes"].itertuples())
    lo_hi = (f"[{_pts(fade['lo'])}, {_pts(fade['hi'])}] (95%, over pairs)"
             if np.isfinite(fade["lo"]) else "(no interval: fewer than two pairs)")
    return (f"Slope of the 1%-vs-all difference per doubling of $K$, mean over "
            f"{fade['n_pairs']} pairs: {_pts(fade['mean'])} points {lo_hi}; "
            f"does the top 1% fall further behind all dimensions as shots grow, i.e. does the "
            f"redundancy fade? **{fade['verdict']}** (rule \"ch3 fades with shots\"). Per "
            f"pair: {per}.")


def precursor_text(verdict2: pd.DataFrame, precursor: pd.DataFrame) -> str:
    """The 2-way results in words: the 1% verdicts and the oracle re-weighting's gains at the
    fewest shots.

    Parameters
    ----------
    verdict2 : DataFrame
        :func:`diffred.studies.fewshot.paper.one_percent_verdict` of the 2-way curves.
    precursor : DataFrame
        :func:`diffred.studies.fewshot.runs.run_precursor_two_way` (columns method, shots,
        gain, gain_ci95).

    Returns
    -------
    str
        Markdown.
    """
    one2 = _first_shot(verdict2)
    pre1 = precursor[(precursor.method == "oracle") & (precursor.shots == precursor.shots.min())]
    return (f"In 2-way {int(one2.shots.iloc[0])}-shot episodes, of {len(one2)} pairs, the "
            f"top 1% against all dimensions: {_counts(one2)} "
            f"(mean paired difference {_pts(one2.difference.mean())} points); the precursor's "
            f"oracle re-weighting changes accuracy by {_pts(pre1.gain.min())} to "
            f"{_pts(pre1.gain.max())} points ({int((pre1.gain - pre1.gain_ci95 > 0).sum())} of "
            f"{len(pre1)} pairs significantly positive).")


def confounder_text(conf: pd.DataFrame, fdr: float) -> str:
    """The confounder test in words (:func:`diffred.studies.fewshot.paper.confounder_counts`).

    Parameters
    ----------
    conf : DataFrame
        :func:`diffred.studies.fewshot.method.confounders` (one row per dimension).
    fdr : float
        The Benjamini–Hochberg level.

    Returns
    -------
    str
        Markdown.
    """
    counts = confounder_counts(conf, fdr)
    return (f"Uncorrected, {counts['uncorrected']} of {counts['dims']} dimensions pass the sign "
            f"test at p < {fdr:g} — chance alone would give about "
            f"{counts['expected_by_chance']:.0f}. After Benjamini–Hochberg at {100 * fdr:g}%, "
            f"{counts['discoveries']} remain ({counts['helps']} whose removal raises 1-shot "
            f"accuracy, red; {counts['hurts']} whose removal lowers it, blue); at most about "
            f"{counts['expected_false']:.1f} of them are expected to be false discoveries. Of "
            f"the {counts['helps']} red dimensions, {counts['helps_in_quadrant']} have "
            f"above-median within-class variance *and* below-median centroid spread — the "
            f"paper's confounders — a quadrant that holds "
            f"{100 * counts['quadrant_share']:.0f}% of all dimensions. "
            + _enrichment_text(confounder_enrichment(conf, fdr)))


def _enrichment_text(e: dict) -> str:
    ratio, iv = odds_ratio_texts(e)
    return (f"Fisher's exact test of that 2×2 table: odds ratio {ratio} {iv} (95%), one-sided "
            f"p = {e['p_value']:.2g}; are "
            f"helping dimensions enriched in the paper's quadrant? **{e['verdict']}** (rule "
            f"\"ch3 confounders have high variance and close centroids\").")


#: the page's figures of the real-data measurements, as MyST references (rendered "Figures
#: 3.1 and 3.2" by the numbered book)
REAL_DATA_FIGURES = "{numref}`Figures %s <fig-ch3-curves>` and {numref}`%s <fig-ch3-confounders>`"


def simulation_text(sim: pd.DataFrame, figures: str = REAL_DATA_FIGURES) -> str:
    """The Gaussian simulation in words: the gain of dropping the confounders per K, and
    whether it fades.

    Parameters
    ----------
    sim : DataFrame
        :func:`diffred.studies.fewshot.method.confounder_simulation` (columns shots, gain,
        gain_ci95), rows by increasing shots.
    figures : str
        How the text names the figures of the real-data measurements (MyST; by default
        ``{numref}`` references to the page's figure names).

    Returns
    -------
    str
        Markdown.
    """
    first, last = sim.iloc[0], sim.iloc[-1]
    fades = last.gain + last.gain_ci95 < first.gain - first.gain_ci95
    return ("In the simulation, dropping the confounders changes accuracy by "
            + ", ".join(f"{_pts(g, c)} points at K={int(k)}"
                        for k, g, c in zip(sim.shots, sim.gain, sim.gain_ci95))
            + (f": the gain at K={int(first.shots)} fades as $K$ grows" if fades else
               f": the gain at K={int(first.shots)} does not clearly fade by "
               f"K={int(last.shots)}")
            + (" and turns into a loss once the centroids are well estimated and the "
               "confounders' small separations add up" if last.gain + last.gain_ci95 < 0
               else "")
            + f". That is the mechanism the paper proposes; whether real features behave so "
              f"is what {figures} measure.")


def mask_text(masks: pd.DataFrame, choice: dict) -> str:
    """The selected settings and the support-estimated soft mask's gains per classifier and
    shots, in words.

    Parameters
    ----------
    masks : DataFrame
        :func:`diffred.studies.fewshot.runs.run_mask_comparison` (columns method, classifier,
        shots, gain, gain_ci95).
    choice : dict
        ``{"shrink": s, "topk_fraction": f}``.

    Returns
    -------
    str
        Markdown.
    """
    sm = masks[masks.method == "soft mask (support)"]
    return (f"Selected on held-out images: shrink = {choice['shrink']:g}, topk_fraction = "
            f"{choice['topk_fraction']:g}. On report episodes the support-estimated soft mask "
            f"changes "
            + "; ".join(f"{c.upper()} {int(k)}-shot accuracy by {_pts(g.gain.min())} to "
                        f"{_pts(g.gain.max())} points ({int((g.gain - g.gain_ci95 > 0).sum())} "
                        f"of {len(g)} cells significantly positive, "
                        f"{int((g.gain + g.gain_ci95 < 0).sum())} negative)"
                        for (c, k), g in sm.groupby(["classifier", "shots"])) + ".")


def findings_text(verdict5: pd.DataFrame, verdict2: pd.DataFrame, conf: pd.DataFrame,
                  masks: pd.DataFrame, choice: dict, fdr: float, quick: bool = False) -> str:
    """The chapter's findings box: the 1% verdicts (N-way and 2-way, fewest shots), the
    confounder count, and the soft mask's 1-shot LR gains.

    Parameters
    ----------
    verdict5, verdict2 : DataFrame
        :func:`diffred.studies.fewshot.paper.one_percent_verdict`, N-way and 2-way.
    conf : DataFrame
        :func:`diffred.studies.fewshot.method.confounders`.
    masks : DataFrame
        :func:`diffred.studies.fewshot.runs.run_mask_comparison`.
    choice : dict
        ``{"shrink": s, "topk_fraction": f}``.
    fdr : float
        The Benjamini–Hochberg level.
    quick : bool
        Smoke-test scale: a note says the numbers are not the book's.

    Returns
    -------
    str
        Markdown.
    """
    one5, one2 = _first_shot(verdict5), _first_shot(verdict2)
    counts = confounder_counts(conf, fdr)
    sm = masks[masks.method == "soft mask (support)"]
    lr1 = sm[(sm.classifier == "lr") & (sm.shots == 1)]
    found = [
        f"With exactly 1% of the dimensions (oracle importance), 1-shot accuracy recovers "
        f"that of all dimensions (within ±{100 * one5.margin.iloc[0]:g} point, two one-sided "
        f"tests) or beats it in {int(one5.reproduced.sum())} of {len(one5)} "
        f"backbone/dataset pairs in {int(one5.n_way.max())}-way episodes ({_counts(one5)}) "
        f"and in {int(one2.reproduced.sum())} of {len(one2)} in the precursor's 2-way "
        f"setting; the paper says 1% can recover full performance in some 5-way 1-shot "
        f"cases.",
        f"Of {counts['dims']} dimensions, {counts['helps']} are confounders whose removal "
        f"significantly raises 1-shot nearest-centroid accuracy after Benjamini–Hochberg "
        f"correction ({counts['uncorrected']} uncorrected, ~{counts['expected_by_chance']:.0f} "
        f"expected by chance). " + _enrichment_text(confounder_enrichment(conf, fdr)),
        f"The support-estimated soft mask (shrink {choice['shrink']:g}, chosen on held-out "
        f"images) changes 1-shot LR accuracy on report episodes by {_pts(lr1.gain.min())} to "
        f"{_pts(lr1.gain.max())} points."]
    if quick:
        found.append("*(Smoke-test scale: `quick = True`; these numbers are not the book's.)*")
    return " ".join(found)
