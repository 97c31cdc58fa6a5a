"""Chapter 1's page verbs (diffred.studies.diffuse.runs and report) give what the page's inline
code gave: the same tables, the same reader tables, the same line of prose."""
from __future__ import annotations

import types

import numpy as np
import pandas as pd

import diffred
from diffred.studies.diffuse import method as R
from diffred.studies.diffuse import paper as P
from diffred.studies.diffuse import report as show
from diffred.studies.diffuse import runs
from diffred.studies.diffuse.paper import PAPER_MODELS

PROV = dict(weights="w", n_train=20, n_test=10, code_version="v", train_subset="{}",
            test_subset="{}")


def _sweep(model, dataset, methods, seconds):
    rows, pcs = [], []
    for m in methods:
        for f, seeds in ((1.0, [0]),) if m == "full" else ((0.1, [0, 1]), (0.2, [0, 1]), (1.0, [0])):
            for s in seeds:
                acc = 0.8 - 0.1 * (1 - f) - 0.01 * s - 0.02 * (m != "random" and m != "full")
                rows.append(dict(method=m, fraction=f, seed=s, k=max(1, int(10 * f)), dim=10,
                                 accuracy=acc, full_accuracy=0.8, probe_seconds=seconds))
                for c, d in (("cat", 0.05), ("dog", -0.05)):
                    pcs.append(dict(method=m, fraction=f, seed=s, k=max(1, int(10 * f)),
                                    **{"class": c}, accuracy=acc + d, class_n_test=5))
    prov = dict(model=model, dataset=dataset, layer="penultimate", **PROV)
    return R.SweepResult(pd.DataFrame(rows).assign(**prov), pd.DataFrame(pcs).assign(**prov))


def _html(styler) -> str:
    return styler.set_uuid("t").to_html()


def test_sweep_tables_and_fit_summary_are_the_former_cell():
    vision = _sweep("a", "cifar10", ["full", "random"], 3.0)
    text = _sweep("t", "trec", ["full", "random"], 2.0)
    base = _sweep("a", "cifar10", ["full", "pca_top"], 4.0)
    probes, per_class, curve = runs.sweep_tables([vision, text], base)
    # the page before: concat, accuracy curve, concat of the per-class tables, a printed line
    old = pd.concat([vision.runs, text.runs, base.runs[base.runs.method != "full"]],
                    ignore_index=True)
    pd.testing.assert_frame_equal(probes, old)
    pd.testing.assert_frame_equal(curve, R.accuracy_curve(old))
    pd.testing.assert_frame_equal(per_class, pd.concat([vision.per_class, text.per_class]))
    fits = old.drop_duplicates(["model", "dataset", "layer", "probe_seconds"])
    assert show.fit_summary(probes) == (f"{len(old)} probes in {len(fits)} batched sweeps, "
                                        f"{fits.probe_seconds.sum():.0f} s of probe fitting")
    pd.testing.assert_frame_equal(R.class_cost(per_class),
                                  R.class_cost(pd.concat([vision.per_class, text.per_class])))


def test_reader_tables_are_the_former_cells():
    vision = _sweep("a", "cifar10", ["full", "random"], 3.0)
    curve = R.accuracy_curve(vision.runs)
    deltas = [0.8, 0.9, 0.95]
    dr = R.dr_table(curve, deltas)
    assert _html(show.redundancy_table(dr, deltas)) == _html(diffred.reader_table(
        show.with_interval(dr[dr.layer == "penultimate"], digits=2),
        ["model", "dataset", "dim", "full_accuracy", *[f"DR({d:g})" for d in deltas],
         "gap_at_20pct", "interval"], show.GAP_LABELS, 2))
    both = show.with_interval(pd.DataFrame({"gap_lo": [0.01, np.nan], "gap_hi": [0.03, 0.1]}))
    assert list(both.interval) == ["[0.010,\u00a00.030]", "–"]   # one cell, one line
    short = dr.assign(converged=0.9)       # a share below 100% is shown
    assert "converged" in _html(show.redundancy_table(short, deltas))
    assert "converged" not in _html(show.redundancy_table(dr.assign(converged=1.0), deltas))
    lc = curve[curve.method == "random"].assign(n_train=20, gap=lambda d: 1 - d.ratio,
                                                gap_points=0.0, converged=1.0)
    assert _html(show.learning_curve_table(lc)) == _html(diffred.reader_table(
        show.with_interval(lc), ["model", "n_train", "fraction", "full_accuracy", "gap",
                                 "interval", "gap_points"], show.GAP_LABELS))
    cost = R.class_cost(vision.per_class)
    assert _html(show.class_cost_table(cost, [0.01, 0.05, 0.2])) == _html(diffred.reader_table(
        cost[(cost.layer == "penultimate") & cost.fraction.isin([0.01, 0.05, 0.2])],
        ["model", "dataset", "fraction", "mean_class_drop", "worst_class_drop", "unevenness",
         "unevenness_ci95", "null", "uneven", "worst_class"],
        {"mean_class_drop": "mean-class drop", "worst_class_drop": "worst-class drop",
         "unevenness_ci95": "± CI", "null": "null 95%", "worst_class": "worst class"}))

    layer = _sweep("a", "cifar10", ["full", "random"], 1.0)
    layer.runs["layer"] = "blocks.5"
    layer_dr = runs.layer_dr_table(dr, layer.runs, ["a"], ["cifar10"], deltas)
    old = pd.concat([dr[dr.model.isin(["a"]) & dr.dataset.isin(["cifar10"])],
                     R.dr_table(R.accuracy_curve(layer.runs), deltas)], ignore_index=True)
    pd.testing.assert_frame_equal(layer_dr, old)
    assert list(layer_dr.layer) == ["penultimate", "blocks.5"]
    assert _html(show.layer_table(layer_dr, deltas)) == _html(diffred.reader_table(
        layer_dr, ["model", "dataset", "layer", "dim", "full_accuracy",
                   *[f"DR({d:g})" for d in deltas], "gap_at_20pct"], show.GAP_LABELS, 2))
    assert show.layer_figure(layer_dr).to_dict() == show.layer_chart(layer_dr).to_dict()
    assert "No intermediate stage" in show.layer_figure(layer_dr.iloc[:0]).data


def test_paper_comparison_with_deviations_names_each_rows_images():
    dr = pd.DataFrame({"model": ["m", "m"], "dataset": ["cifar10", "elpv"],
                       "layer": "penultimate", "dim": 1280, "full_accuracy": 0.9,
                       "DR(0.9)": [0.8, 0.5], "gap_at_20pct": [0.03, 0.2], "gap_lo": 0.02,
                       "gap_hi": 0.04, "gap_points": 0.027, "n_train": 5000, "n_test": 10000})
    for resolution in (160, None):
        new = show.with_deviations(P.paper_comparison(dr), resolution)
        gap, dr_row = new.iloc[0], new.iloc[1]
        assert gap.deviation.startswith(f"5,000 train / 10,000 test images, "
                                        f"{resolution or 'native'} px")
        assert "ResNet-50, 50,000 / 10,000 images" in gap.deviation
        assert dr_row.deviation.startswith("different backbone")
        assert _html(show.comparison_table(new)) == _html(diffred.reader_table(
            show.with_interval(new, "lo", "hi"),
            ["quantity", "paper_model", "paper", "model", "this_run", "interval", "points",
             "verdict", "deviation"],
            {"paper_model": "paper's model", "this_run": "this run",
             "interval": "95% interval"}))


def test_paper_backbones_and_subset_cka_table(monkeypatch):
    assert runs.paper_backbones() == (list(PAPER_MODELS), None, ["timm:resnet50"],
                                      ["timm:resnet50"], [])
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(12, 16)), "b": rng.normal(size=(12, 8))}
    calls = []

    def fake_features(model, dataset, split, **kw):
        calls.append((model, dataset, split, kw))
        return types.SimpleNamespace(X=X[model], y=np.arange(12) % 3, meta={"weights": model * 2})
    monkeypatch.setattr("diffred.core.extract.features", fake_features)
    cka = runs.subset_cka_table(["a", "b"], "cifar10", [4, 8, 16], range(2), n_per_class=4,
                                resolution=160)
    assert calls[0] == ("a", "cifar10", "test", dict(n_per_class=4, resolution=160,
                                                     progress=False))
    old = pd.concat([R.subset_cka(X[m], [s for s in [4, 8, 16] if s < X[m].shape[1]],
                                  range(2)).assign(model=m, weights=m * 2, dataset="cifar10",
                                                   n_images=12) for m in "ab"],
                    ignore_index=True)
    pd.testing.assert_frame_equal(cka, old)
    assert sorted(set(zip(cka.model, cka["size"]))) == [("a", 4), ("a", 8), ("b", 4)]
