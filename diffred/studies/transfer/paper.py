"""Chapter 4's paper side: what Neyshabur, Sedghi & Zhang (NeurIPS 2020) state, with where, and
the rules that hold this run's tables against it.

**Sources.**  The paper's text could be read here only as far as its Abstract (arXiv
2008.11687v2 and the NeurIPS 2020 proceedings page) and the opening paragraph of its
Introduction; its body (sections, figures, tables) could not.  So :data:`QUOTES` holds the
Abstract's sentences, each with its source, and every finding of :data:`PAPER_FINDINGS` either
points to a quote or says plainly that its statement in the body was not read (none of those
is quoted or given a section number).  The official code
(``google-research/understanding-transfer-learning`` @ 0e4df44) sources the protocol constants
(:data:`OFFICIAL_LR`).

**Verdict rules.**  Every rule compares two quantities with a 95% confidence interval from the
measured spread (seeds, or seed pairs) and answers

* ``yes`` — the interval lies on the paper's side,
* ``no`` — the interval lies on the other side,
* ``inconclusive`` — it straddles the boundary (too few seeds or too small an effect).

The interpolation rule also needs a tolerance for "no barrier": the 95% binomial margin of
one test-accuracy measurement at the test-set size, 1.96 · sqrt(a (1 - a) / n) — a path that
never leaves that band cannot be told from a flat one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.core.stats import t_interval
from diffred.studies.transfer.basin import pair_summary

PAPER = ("Neyshabur, Sedghi & Zhang, 'What is being transferred in transfer learning?', "
         "NeurIPS 2020 (arXiv 2008.11687)")
ABSTRACT = "Abstract (arXiv 2008.11687v2)"
REPO = "google-research/understanding-transfer-learning@0e4df44"

#: The official pair of rates: P-T ("finetune") 0.02, RI-T ("randinit") 0.1 — README
#: training jobs (``finetune-lr0.02``, ``randinit-lr0.1``) and ckpt_interpolation.py of
#: :data:`REPO` (nominal for batch 256).
OFFICIAL_LR = {"P-T": 0.02, "RI-T": 0.1}

#: The paper's own sentences that the findings rest on: {name: (quote, source)}.  Only the
#: Abstract could be read; the NeurIPS proceedings page's Abstract says "high-level
#: statistics" where arXiv v2 says "low-level statistics" (the book follows v2).
QUOTES = {
    "block shuffle": (
        "Through a series of analyses on transferring to block-shuffled images, we separate the "
        "effect of feature reuse from learning low-level statistics of data and show that some "
        "benefit of transfer learning comes from the latter.", ABSTRACT),
    "basin": (
        "We present that when training from pre-trained weights, the model stays in the same "
        "basin in the loss landscape and different instances of such model are similar in "
        "feature space and close in parameter space.", ABSTRACT),
}

#: The source of a claim that the readable text (the Abstract) does not state: the paper's
#: body could not be read here, so the claim is neither quoted nor given a section.
BODY_NOT_READ = "not in the Abstract; the paper's body could not be read here, so not quoted"
#: The same, for the part of a claim beyond its quoted sentence.
_PART_NOT_READ = "not in the Abstract (body not read)"

#: The paper's findings the verdicts check: {finding: (claim, source)}.  A source quotes
#: :data:`QUOTES` (the Abstract) or says that the statement is in the unread body; parts of a
#: claim beyond the quoted sentence are marked the same way.
PAPER_FINDINGS = {
    "P-T beats RI-T": ("P-T ≥ RI-T accuracy on every target, even far ones", BODY_NOT_READ),
    "P-T trains faster": ("P-T reaches its accuracy in far fewer steps", BODY_NOT_READ),
    "block shuffle": ("some benefit of transfer comes from low-level statistics: the P-T gap "
                      "narrows as blocks shrink, but P-T still trains faster",
                      f"{ABSTRACT}: 'some benefit of transfer learning comes from the latter' "
                      "(low-level statistics); faster training: " + _PART_NOT_READ),
    "CKA": ("P-T instances are similar in feature space (more than RI-T instances)",
            f"{ABSTRACT}: 'different instances of such model are similar in feature space'; "
            "the RI-T comparison: " + _PART_NOT_READ),
    "l2 distance": ("P-T instances are close in parameter space (and to the pretrained point)",
                    f"{ABSTRACT}: 'close in parameter space'; the pretrained point: "
                    + _PART_NOT_READ),
    "interpolation": ("P-T stays in one basin: no barrier between two P-T solutions, "
                      "a barrier between two RI-T solutions",
                      f"{ABSTRACT}: 'the model stays in the same basin in the loss landscape'; "
                      "the RI-T barrier: " + _PART_NOT_READ),
    "criticality": ("lower modules are less critical than higher ones; P-T modules less "
                    "critical than RI-T modules", BODY_NOT_READ),
    "checkpoint": ("fine-tuning from early pretraining checkpoints already gives most of the "
                   "benefit", BODY_NOT_READ + f"; the sweep: {REPO}:configs/p200_finetune_ckpt.py"),
}


def _verdict(lo: float, hi: float) -> str:
    """'yes' if the interval (lo, hi) of (paper side − other side) is above 0, 'no' if below."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return "inconclusive"
    return "yes" if lo > 0 else "no" if hi < 0 else "inconclusive"


def diff_ci(a, b) -> tuple[float, float, float]:
    """Mean of a − mean of b and its 95% Welch interval (lo, hi)."""
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return d, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = stats.t.ppf(0.975, df) * se
    return d, d - h, d + h


def _all(verdicts) -> str:
    """Combine per-target verdicts: yes if all yes, no if any no, else inconclusive."""
    verdicts = list(verdicts)
    return "no" if "no" in verdicts else "yes" if all(v == "yes" for v in verdicts) \
        else "inconclusive"


def _gap(df, column, target):
    rows = df[df.dataset == target]
    return diff_ci(rows[rows.init == "P-T"][column], rows[rows.init == "RI-T"][column])


def _iv(lo: float, hi: float) -> str:
    """An interval as text; where it cannot be computed (one run or pair), says so."""
    return f"[{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "(no CI: one run)"


def _pm(half: float) -> str:
    return f"± {half:.3f}" if np.isfinite(half) else "(no CI: one run)"


def barrier_tolerance(accuracy: float, n_test: int) -> float:
    """95% binomial margin of one accuracy measurement on ``n_test`` images."""
    return float(1.96 * np.sqrt(max(accuracy * (1 - accuracy), 1e-12) / n_test))


def arm_findings(acc: pd.DataFrame, blocks: pd.DataFrame, basin: dict,
                 checkpoints: pd.DataFrame | None = None) -> dict:
    """{finding: (what this run measured, verdict)} for one arm, from its result tables."""
    out = {}
    targets = list(dict.fromkeys(acc.dataset))
    gaps = {t: _gap(acc, "accuracy", t) for t in targets}
    out["P-T beats RI-T"] = ("; ".join(f"{t}: {d:+.3f} {_iv(lo, hi)}"
                                       for t, (d, lo, hi) in gaps.items()),
                             _all(_verdict(lo, hi) for _, lo, hi in gaps.values()))
    fast = {t: _gap(acc, "accuracy_epoch1", t) for t in targets}
    out["P-T trains faster"] = ("accuracy after epoch 1, P-T − RI-T: " + "; ".join(
        f"{t}: {d:+.3f} {_iv(lo, hi)}" for t, (d, lo, hi) in fast.items()),
        _all(_verdict(lo, hi) for _, lo, hi in fast.values()))

    full, small = blocks.block.max(), blocks.block.min()
    by_seed = blocks.pivot_table(index=["seed", "block"], columns="init",
                                 values=["accuracy", "accuracy_epoch1"])
    gap = (by_seed["accuracy"]["P-T"] - by_seed["accuracy"]["RI-T"]).unstack("block")
    narrowing = t_interval(gap[full] - gap[small])
    early = by_seed["accuracy_epoch1"].xs(small, level="block")
    early_gap = diff_ci(early["P-T"], early["RI-T"])
    v_narrow = _verdict(narrowing[0] - narrowing[1], narrowing[0] + narrowing[1])
    v_early = _verdict(early_gap[1], early_gap[2])
    out["block shuffle"] = (
        f"gap narrows by {narrowing[0]:+.3f} {_pm(narrowing[1])} from b={full} to b={small}; "
        f"at b={small} P-T − RI-T after epoch 1 {early_gap[0]:+.3f} "
        f"{_iv(early_gap[1], early_gap[2])} ({narrowing[2]} seeds)",
        _all([v_narrow, v_early]))

    summary = pair_summary(basin).set_index("pair")
    per_pair = basin["cka"].groupby(["pair", "seeds"]).cka.mean()
    c = diff_ci(per_pair["P-T/P-T"], per_pair["RI-T/RI-T"])
    out["CKA"] = (f"mean CKA over stages P-T/P-T {summary.cka['P-T/P-T']:.3f}, RI-T/RI-T "
                  f"{summary.cka['RI-T/RI-T']:.3f}, P-T/RI-T {summary.cka['P-T/RI-T']:.3f}; "
                  f"difference {c[0]:+.3f} {_iv(c[1], c[2])}", _verdict(c[1], c[2]))

    d = basin["distances"]
    close = diff_ci(d[d.pair == "RI-T/RI-T"].l2_distance, d[d.pair == "P-T/P-T"].l2_distance)
    home = diff_ci(d[d.pair == "RI-T/its init"].l2_distance,
                   d[d.pair == "P-T/pretrained"].l2_distance)
    out["l2 distance"] = (
        "ℓ2 P-T/P-T {:.3g}, RI-T/RI-T {:.3g}, P-T/pretrained {:.3g}, RI-T/its init {:.3g}".format(
            *(summary.l2_distance[p] for p in ("P-T/P-T", "RI-T/RI-T", "P-T/pretrained",
                                               "RI-T/its init"))),
        _all([_verdict(close[1], close[2]), _verdict(home[1], home[2])]))

    bars = basin["interpolation"].groupby(["pair", "seeds"]).barrier.first()
    pt_acc = acc[acc.init == "P-T"]
    tol = barrier_tolerance(float(pt_acc.accuracy.mean()), int(pt_acc.n_test.min()))
    pt_bar = t_interval(bars["P-T/P-T"])
    ri_vs_pt = diff_ci(bars["RI-T/RI-T"], bars["P-T/P-T"])
    pt_upper = pt_bar[0] + (pt_bar[1] if np.isfinite(pt_bar[1]) else 0.0)
    v_flat = "yes" if pt_upper <= tol else "no" if pt_bar[0] - np.nan_to_num(pt_bar[1]) > tol \
        else "inconclusive"
    out["interpolation"] = (
        f"barrier P-T/P-T {pt_bar[0]:.3f} {_pm(pt_bar[1])} (tolerance {tol:.3f}), "
        f"RI-T/RI-T − P-T/P-T {ri_vs_pt[0]:+.3f} {_iv(ri_vs_pt[1], ri_vs_pt[2])}",
        _all([v_flat, _verdict(ri_vs_pt[1], ri_vs_pt[2])]))

    crit = basin["criticality"]
    pt = crit[crit.init == "P-T"].criticality.to_numpy()
    ri = crit[crit.init == "RI-T"].criticality.to_numpy()
    half = len(pt) // 2
    low, high = np.mean(pt[:half]), np.mean(pt[half:])
    pt_sum, ri_sum = np.sum(pt), np.sum(ri)
    if low < high and pt_sum < ri_sum:
        verdict = "yes"
    elif low > high or pt_sum > ri_sum:
        verdict = "no"
    else:   # ties (e.g. every module rewindable): the data cannot order the modules
        verdict = "inconclusive"
    out["criticality"] = (
        "μ per stage (0 = rewindable, inf = no feasible point) P-T "
        + ", ".join(f"{v:.3g}" for v in pt) + "; RI-T " + ", ".join(f"{v:.3g}" for v in ri)
        + " (one run per init: no CI)", verdict)

    if checkpoints is not None and checkpoints.checkpoint_epoch.nunique() > 2:
        out["checkpoint"] = checkpoint_finding(checkpoints)
    return out


def checkpoint_finding(checkpoints: pd.DataFrame) -> tuple[str, str]:
    """Does the middle pretraining checkpoint already give most (over half) of the final
    checkpoint's benefit over the random init (epoch 0), in final accuracy and in accuracy
    after one fine-tuning epoch (speed)?

    Per fine-tuning seed s, d_s = (a_mid − a_0) − (a_final − a_mid): the benefit reached by
    the middle checkpoint minus the benefit still to come.  "yes" when the 95% t-interval of
    the mean of d_s over seeds is above 0 for both measures, "no" when either is below 0,
    else "inconclusive" (one seed gives no interval, so it is inconclusive).  The middle
    checkpoint is the saved epoch at position len // 2 of the sorted saved epochs.
    """
    epochs = sorted(checkpoints.checkpoint_epoch.unique())
    first, mid, last = epochs[0], epochs[len(epochs) // 2], epochs[-1]
    parts, verdicts = [], []
    for column, label in (("accuracy", "final accuracy"), ("accuracy_epoch1", "after epoch 1")):
        by = checkpoints.pivot_table(index="seed", columns="checkpoint_epoch", values=column)
        d = (by[mid] - by[first]) - (by[last] - by[mid])
        m, h, n = t_interval(d)
        share = (by[mid] - by[first]).mean() / (by[last] - by[first]).mean() \
            if (by[last] - by[first]).mean() > 0 else float("nan")
        verdicts.append(_verdict(m - h, m + h))
        parts.append(f"{label}: epoch {first} {by[first].mean():.3f}, epoch {mid} "
                     f"{by[mid].mean():.3f}, epoch {last} {by[last].mean():.3f}"
                     + (f" ({share:.0%} of the benefit at epoch {mid})" if np.isfinite(share)
                        else " (no benefit over the random init)")
                     + f", reached − to come {m:+.3f} {_pm(h)}")
    n_seeds = checkpoints.seed.nunique()
    return "; ".join(parts) + f" ({n_seeds} seed{'s' if n_seeds > 1 else ''})", _all(verdicts)


def paper_vs_run(findings: dict[str, dict]) -> pd.DataFrame:
    """Rows per paper finding: the claim, its source and, per arm, measured value and verdict."""
    rows = []
    for finding, (claim, source) in PAPER_FINDINGS.items():
        row = {"finding": finding, "paper (Neyshabur et al. 2020)": claim, "source": source}
        for arm, f in findings.items():
            measured, verdict = f.get(finding, ("not measured in this arm", "—"))
            row[f"{arm}: measured"] = measured
            row[f"{arm}: reproduced"] = verdict
        rows.append(row)
    return pd.DataFrame(rows)


