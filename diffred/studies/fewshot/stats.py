"""Statistics of chapter 3's few-shot experiments (intervals, the sign test and the
Benjamini–Hochberg correction are :mod:`diffred.core.stats`): confounder counts, the rule that
picks the soft mask's settings on selection episodes, and the pre-registered "1% of dimensions"
verdict.

Everything here is plain NumPy / pandas on per-episode results or on the experiment tables of
:mod:`diffred.studies.fewshot.method`; nothing here sees features.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: the paper's headline fraction (arXiv 2310.03843v1, abstract: "using only 1% of the most
#: important feature dimensions ... recover the performance ... of the full representation")
PAPER_FRACTION = 0.01


def confounder_counts(conf: pd.DataFrame, fdr: float = 0.05) -> dict:
    """How many dimensions' removal changes 1-shot accuracy: uncorrected at p < fdr (and how
    many of those chance alone gives, ``fdr * D``) and after Benjamini–Hochberg at ``fdr``
    (at most ``fdr`` of these are expected to be false discoveries).  ``helps_in_quadrant``:
    how many of the dimensions whose removal helps have above-median within-class variance
    and below-median centroid spread (the paper's confounders); ``quadrant_share``: the share
    of all dimensions in that quadrant (a quarter or less if the two were unrelated)."""
    D = len(conf)
    sig = conf.q_value <= fdr                  # the table's 'effect' uses the same rule
    helps = sig & (conf.delta_acc > 0)
    quadrant = (conf.within_var > conf.within_var.median()) & \
        (conf.centroid_dist < conf.centroid_dist.median())
    return {"dims": D, "fdr": fdr,
            "helps_in_quadrant": int((helps & quadrant).sum()),
            "quadrant_share": float(quadrant.mean()),
            "uncorrected": int((conf.p_value < fdr).sum()), "expected_by_chance": fdr * D,
            "helps": int((sig & (conf.delta_acc > 0)).sum()),
            "hurts": int((sig & (conf.delta_acc < 0)).sum()),
            "discoveries": int(sig.sum()), "expected_false": fdr * int(sig.sum())}


# --------------------------------------------------------------------------- selection
def select_mask_settings(selection: pd.DataFrame, shrinks, topk_fractions,
                         tie: float = 1e-3) -> tuple[dict, pd.DataFrame]:
    """The rule fixing the soft mask's two settings, applied to *selection* episodes only.

    ``selection``: :func:`diffred.studies.fewshot.method.soft_mask_comparison` rows of the
    selection parts
    (every backbone/dataset, shots, classifier).  Score of a candidate = its mean accuracy over
    all those cells.  ``shrink``: the best score of "soft mask (support)"; then
    ``topk_fraction``: the best score of "hard top-k (support)" at that shrink.  Candidates
    within ``tie`` (0.1 points) of the best are tied; a tie goes to the value listed first in
    the grid (the grids start with the precursor's / paper's values: shrink 0, top 1%).
    Returns ({"shrink": s, "topk_fraction": f}, table of every candidate's score).
    """
    def pick(rows, column, grid):
        score = rows.groupby(column).acc.mean().reindex(list(grid))
        if score.isna().any():
            raise ValueError(f"selection table lacks {column} values "
                             f"{list(score.index[score.isna()])}")
        best = score.max()
        chosen = next(v for v in grid if score[v] >= best - tie)
        return chosen, score

    soft = selection[selection.method == "soft mask (support)"]
    shrink, soft_score = pick(soft, "shrink", shrinks)
    hard = selection[(selection.method == "hard top-k (support)")
                     & np.isclose(selection.shrink, shrink)]
    topk, hard_score = pick(hard, "topk_fraction", topk_fractions)
    cells = len(soft) // len(list(shrinks))
    table = pd.concat([
        pd.DataFrame({"setting": "shrink", "value": soft_score.index,
                      "method scored": "soft mask (support)",
                      "mean selection accuracy": soft_score.values}),
        pd.DataFrame({"setting": "topk_fraction", "value": hard_score.index,
                      "method scored": f"hard top-k (support), shrink = {shrink:g}",
                      "mean selection accuracy": hard_score.values})], ignore_index=True)
    table["chosen"] = [(s == "shrink" and v == shrink) or (s == "topk_fraction" and v == topk)
                       for s, v in zip(table.setting, table.value)]
    table["cells averaged"] = cells
    return {"shrink": float(shrink), "topk_fraction": float(topk)}, table


# --------------------------------------------------------------------------- verdicts
def _verdict(diff, ci):
    return np.where(diff - ci > 0, "above full", np.where(diff + ci < 0, "below full",
                                                          "recovers (within CI)"))


def one_percent_verdict(curves: pd.DataFrame, fraction: float = PAPER_FRACTION) -> pd.DataFrame:
    """Pre-registered test of the paper's claim, per backbone/dataset/way/shot: accuracy of the
    top ``fraction`` of dimensions by oracle importance vs all dimensions on the same episodes.
    Verdict (fixed rule): 'above full' if the paired difference's 95% CI lies above 0,
    'below full' if below, else 'recovers (within CI)'.  The claim is reproduced in a cell
    unless the verdict is 'below full'."""
    oracle = curves[curves.ranking == "oracle"]
    at = oracle[np.isclose(oracle.fraction_requested, fraction)]
    if at.empty:
        raise ValueError(f"fraction_curves has no fraction {fraction}; "
                         f"it has {sorted(oracle.fraction_requested.unique())}")
    keys = ["model", "dataset", "n_way", "shots"]
    full = oracle[oracle.fraction_requested == 1.0].set_index(keys)
    at = at.set_index(keys)
    out = pd.DataFrame({"k": at.k, "acc_small": at.acc, "ci_small": at.ci95,
                        "acc_full": full.acc.reindex(at.index),
                        "ci_full": full.ci95.reindex(at.index),
                        "difference": at.diff_full, "difference_ci": at.diff_full_ci95,
                        "n_episodes": at.n_episodes}).reset_index()
    out["verdict"] = _verdict(out.difference, out.difference_ci)
    return out


def curve_peaks(curves: pd.DataFrame) -> pd.DataFrame:
    """Post hoc: per backbone/dataset/way/shot the oracle fraction with the highest accuracy
    *on the same episodes* it is reported on (a maximum over the grid, biased upwards)."""
    oracle = curves[curves.ranking == "oracle"]
    keys = ["model", "dataset", "n_way", "shots"]
    best = oracle.loc[oracle.groupby(keys).acc.idxmax()]
    return pd.DataFrame({**{k: best[k].values for k in keys},
                         "peak_fraction": best.fraction_requested.values, "k": best.k.values,
                         "acc_peak": best.acc.values, "ci_peak": best.ci95.values,
                         "difference": best.diff_full.values,
                         "difference_ci": best.diff_full_ci95.values,
                         "label": "post hoc (best of the grid, same episodes)"})
