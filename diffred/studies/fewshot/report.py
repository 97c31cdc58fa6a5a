"""Chapter 3's reader tables, paper-vs-run comparison and charts, from the tables of
:mod:`diffred.studies.fewshot.method` and the verdicts of :mod:`diffred.studies.fewshot.stats`."""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.studies.fewshot.method import METHODS
from diffred.studies.fewshot.stats import PAPER_FRACTION, confounder_counts

#: where the paper's claims are stated; no number of the paper's could be read (its tables and
#: figures are not in the stored texts), so every claim is qualitative
SOURCE = "Luo et al. 2023, arXiv 2310.03843v1 / OpenReview DMJNaBUv3D, abstract"


def _pm(a, ci, signed=False):
    return f"{100 * a:+.1f} ± {100 * ci:.1f}" if signed else f"{100 * a:.1f} ± {100 * ci:.1f}"


def verdict_table(verdict: pd.DataFrame) -> pd.DataFrame:
    """Reader table of :func:`diffred.studies.fewshot.stats.one_percent_verdict`."""
    return pd.DataFrame({
        "backbone": verdict.model, "dataset": verdict.dataset,
        "episodes": verdict.n_way.astype(str) + "-way " + verdict.shots.astype(str) + "-shot",
        f"top {100 * PAPER_FRACTION:g}% (k)": [f"{_pm(a, c)} ({k})" for a, c, k in
                                               zip(verdict.acc_small, verdict.ci_small,
                                                   verdict.k)],
        "all dims": [_pm(a, c) for a, c in zip(verdict.acc_full, verdict.ci_full)],
        "difference": [_pm(d, c, True) for d, c in zip(verdict.difference,
                                                       verdict.difference_ci)],
        "verdict": verdict.verdict, "n": verdict.n_episodes})


def peak_table(peaks: pd.DataFrame) -> pd.DataFrame:
    """Reader table of :func:`diffred.studies.fewshot.stats.curve_peaks` (post hoc)."""
    return pd.DataFrame({
        "backbone": peaks.model, "dataset": peaks.dataset,
        "episodes": peaks.n_way.astype(str) + "-way " + peaks.shots.astype(str) + "-shot",
        "peak at": [f"{100 * f:g}%" for f in peaks.peak_fraction],
        "accuracy": [_pm(a, c) for a, c in zip(peaks.acc_peak, peaks.ci_peak)],
        "vs all dims": [_pm(d, c, True) for d, c in zip(peaks.difference, peaks.difference_ci)],
        "status": peaks.label})


def precursor_table(pre: pd.DataFrame, curves2: pd.DataFrame) -> pd.DataFrame:
    """The precursor's 2-way setting: plain features ('None') vs the oracle re-weighting, and
    the top 1% vs all dimensions, per backbone/dataset/shots (accuracy ± 95% CI in points)."""
    keys = ["model", "dataset", "shots"]
    p = pre.pivot_table(index=keys, columns="method", values=["acc", "ci95", "gain",
                                                               "gain_ci95"])
    o = curves2[(curves2.ranking == "oracle")
                & np.isclose(curves2.fraction_requested, PAPER_FRACTION)].set_index(keys)
    out = pd.DataFrame({
        "None (all dims)": [_pm(a, c) for a, c in zip(p["acc"]["none"], p["ci95"]["none"])],
        "oracle re-weighting": [_pm(a, c) for a, c in zip(p["acc"]["oracle"],
                                                          p["ci95"]["oracle"])],
        "gain": [_pm(a, c, True) for a, c in zip(p["gain"]["oracle"],
                                                 p["gain_ci95"]["oracle"])]}, index=p.index)
    out[f"top {100 * PAPER_FRACTION:g}% vs all"] = [
        _pm(o.diff_full.get(i, np.nan), o.diff_full_ci95.get(i, np.nan), True)
        for i in out.index]
    return out.reset_index().rename(columns={"model": "backbone", "shots": "K"})


def mask_table(masks: pd.DataFrame) -> pd.DataFrame:
    """Wide table: 'acc ± ci (gain ± ci)' in points, one row per backbone/dataset/classifier/K."""
    cell = masks.apply(lambda r: _pm(r.acc, r.ci95) + (
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
        return pd.DataFrame({f"{label} 1%": [_pm(a, c) for a, c in zip(v.acc_small, v.ci_small)],
                             f"{label} all": [_pm(a, c) for a, c in zip(v.acc_full, v.ci_full)],
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


def paper_vs_run(verdict5: pd.DataFrame, peaks: pd.DataFrame, conf: pd.DataFrame,
                 sim: pd.DataFrame, masks: pd.DataFrame, fdr: float = 0.05) -> pd.DataFrame:
    """The paper's claims (qualitative: its abstract is the only text with them that could be
    read) beside what this run measured."""
    one = verdict5[verdict5.shots == 1]
    below = int((one.verdict == "below full").sum())
    by_shot = verdict5.groupby("shots").verdict.apply(lambda v: int((v != "below full").sum()))
    fade = peaks.groupby("shots").difference.mean()
    counts = confounder_counts(conf, fdr)
    sm = masks[(masks.method == "soft mask (support)") & (masks.shots == masks.shots.min())]
    up = int((sm.gain - sm.gain_ci95 > 0).sum())
    down = int((sm.gain + sm.gain_ci95 < 0).sum())
    return pd.DataFrame([
        {"claim (paper)": "for some cases such as 5-way 1-shot, the top 1% most important "
                          "dimensions recover the full representation's performance",
         "kind": "qualitative", "where": SOURCE,
         "this run": f"1 shot: top 1% not below all dims in {len(one) - below}/{len(one)} "
                     f"backbone/dataset pairs (pre-registered rule, paired 95% CI); by shots: "
                     + ", ".join(f"K={k}: {n}/{int((verdict5.shots == k).sum())}"
                                 for k, n in by_shot.items())},
        {"claim (paper)": "most dimensions are redundant only few-shot and become useful as "
                          "shots grow",
         "kind": "qualitative", "where": SOURCE,
         "this run": "post hoc peak minus all dims, mean over pairs: " + ", ".join(
             f"K={int(k)}: {100 * v:+.1f}" for k, v in fade.items()) + " points"},
        {"claim (paper)": "dimensions with high variance and small centroid distance are "
                          "confounders that disturb few-shot classification",
         "kind": "qualitative", "where": SOURCE,
         "this run": f"{counts['helps']} of {counts['dims']} dimensions: dropping one raises "
                     f"1-shot NC accuracy (BH at {100 * fdr:g}%; {counts['hurts']} lower it); "
                     f"Gaussian simulation: dropping confounders "
                     f"{100 * sim.gain.iloc[0]:+.1f} points at K={int(sim.shots.iloc[0])}, "
                     f"{100 * sim.gain.iloc[-1]:+.1f} at K={int(sim.shots.iloc[-1])}"},
        {"claim (paper)": "a soft mask from estimated importance generally improves few-shot "
                          "transfer",
         "kind": "qualitative", "where": SOURCE,
         "this run": f"{int(sm.shots.iloc[0])}-shot, report episodes, selected shrink "
                     f"{sm.shrink.iloc[0]:g}: mean gain {100 * sm.gain.mean():+.2f} points; "
                     f"{up}/{len(sm)} cells significantly positive, {down} negative"},
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
        # stroke symbols: a point symbol would hide the dash that tells the rankings apart
        strokeDash=alt.StrokeDash("ranking:N", title="ranking",
                                  legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2,
                                                    symbolSize=400)))
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
        tooltip=["dim", alt.Tooltip("delta_acc:Q", format=".5f"), "q_value", "within_var",
                 "centroid_dist"],
    ).properties(width=420, height=300, title=title)


def simulation_chart(sim: pd.DataFrame):
    """Simulated nearest-centroid accuracy with all vs informative dimensions, against K."""
    import altair as alt
    long = pd.concat([
        pd.DataFrame({"K": sim.shots, "features": "all dimensions", "acc": 100 * sim.acc_all,
                      "ci": 100 * sim.ci_all}),
        pd.DataFrame({"K": sim.shots, "features": "confounders dropped",
                      "acc": 100 * sim.acc_informative, "ci": 100 * sim.ci_informative})])
    long = long.assign(lo=long.acc - long.ci, hi=long.acc + long.ci)
    base = alt.Chart(long).encode(x=alt.X("K:Q", scale=alt.Scale(type="log"),
                                          title="shots K (simulated Gaussian model)"),
                                  color=alt.Color("features:N", title=None))
    # one y title for line and band (the band's fields would otherwise join the title)
    return (base.mark_line(point=True).encode(y=alt.Y("acc:Q", title="accuracy (%)"))
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
