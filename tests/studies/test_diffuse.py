"""Chapter 1 (diffred.studies.diffuse.method): subsets, baselines, DR metric, frontier, CKA,
smoke run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffred.studies.diffuse import method as R
from diffred.studies.diffuse import paper as P


# --------------------------------------------------------------------------- subsets
def test_subset_width_matches_the_authors_rule():
    assert R.subset_width(2048, 0.0005) == 1            # int(1.024) = 1
    assert R.subset_width(1280, 0.0005) == 1            # int(0.64) = 0 -> at least 1
    assert R.subset_width(1280, 0.2) == 256
    assert R.subset_width(384, 0.003) == 1
    assert R.subset_width(1280, 1.0) == 1280
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            R.subset_width(10, bad)


def test_random_neurons_is_torch_randperm_prefix_seeded_and_distinct():
    idx = R.random_neurons(1280, 0.1, seed=3)
    torch.manual_seed(3)
    assert np.array_equal(idx, torch.randperm(1280)[:128].numpy())
    assert len(set(idx)) == 128 and idx.min() >= 0 and idx.max() < 1280
    assert np.array_equal(idx, R.random_neurons(1280, 0.1, seed=3))
    assert not np.array_equal(idx, R.random_neurons(1280, 0.1, seed=4))
    assert np.array_equal(np.sort(R.random_neurons(50, 1.0, 0)), np.arange(50))


# --------------------------------------------------------------------------- baselines
def test_pca_basis_orders_by_variance_and_drops_null_directions():
    rng = np.random.default_rng(0)
    scales = np.array([10.0, 5.0, 2.0, 1.0, 0.1])
    X = rng.normal(size=(400, 5)) * scales
    X = np.concatenate([X, np.zeros((400, 2))], axis=1)  # 2 dead neurons: rank 5
    mean, V = R.pca_basis(X)
    assert V.shape == (7, 5)
    var = ((X - mean) @ V).var(0)
    assert np.all(np.diff(var) < 0)                      # decreasing variance
    assert np.allclose(V.T @ V, np.eye(5), atol=1e-5)    # orthonormal
    assert np.allclose(np.abs(V[:5, 0]), [1, 0, 0, 0, 0], atol=0.05)
    assert np.allclose(V[5:], 0, atol=1e-6)              # dead neurons never used


def test_random_projections_uniform_unit_columns_and_gaussian_scale():
    P = R.random_projection(1280, 64, seed=1, kind="uniform")
    assert P.shape == (1280, 64) and P.dtype == np.float32
    assert (P >= 0).all()
    assert np.allclose(np.linalg.norm(P, axis=0), 1, atol=1e-5)
    assert np.array_equal(P, R.random_projection(1280, 64, seed=1))
    assert not np.array_equal(P, R.random_projection(1280, 64, seed=2))
    G = R.random_projection(4000, 50, seed=0, kind="gaussian")
    assert abs(G.std() * np.sqrt(50) - 1) < 0.02 and abs(G.mean()) < 0.01
    with pytest.raises(ValueError, match="'orthogonal'.*uniform, gaussian"):
        R.random_projection(10, 2, 0, kind="orthogonal")


# --------------------------------------------------------------------------- DR metric
def test_diffuse_redundancy_threshold_reading_differs_from_closest():
    """A hand-made curve where the two readings disagree: at 10% the ratio (0.89) is the
    closest to 0.9 but below it, so only 20% (0.95) keeps 90% of the accuracy."""
    f = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
    ratio = [0.40, 0.70, 0.89, 0.95, 0.99, 1.0]
    assert R.diffuse_redundancy(f, ratio, 0.9) == pytest.approx(0.8)
    assert R.diffuse_redundancy(f, ratio, 0.9, reading="closest") == pytest.approx(0.9)
    # order of the grid does not matter; a non-monotone dip above the smallest passing
    # fraction does not either (the smallest fraction that reaches δ counts)
    assert R.diffuse_redundancy(f[::-1], ratio[::-1], 0.9) == pytest.approx(0.8)
    assert R.diffuse_redundancy(f, [0.4, 0.7, 0.91, 0.88, 0.99, 1.0], 0.9) == pytest.approx(0.9)
    assert R.diffuse_redundancy(f, ratio, 1.0) == pytest.approx(0.0)       # only the full layer
    assert R.diffuse_redundancy([0.1, 0.5], [0.5, 0.8], 0.9) == 0.0         # nothing reaches δ
    # "within 5% at 20%" (the abstract) means ratio(0.2) >= 0.95, i.e. DR(0.95) >= 0.8
    assert R.diffuse_redundancy(f, ratio, 0.95) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        R.diffuse_redundancy([0.1, 0.2], [1.0], 0.9)
    with pytest.raises(ValueError, match="unknown DR reading 'nearest'.*threshold, closest"):
        R.diffuse_redundancy(f, ratio, 0.9, reading="nearest")


# --------------------------------------------------------------------------- paper constants
def test_every_paper_constant_has_a_source_and_unsourced_ones_are_gone():
    table = P.constants_table()
    assert len(table) >= 12 + 1 + len(P.PROTOCOL) + len(P.PAPER_MODELS)
    assert table["source"].map(lambda s: isinstance(s, str) and len(s.strip()) > 10).all()
    assert P.PAPER_DR90["source"].str.len().gt(0).all()
    # the ICLR δ = 0.9 rows as read from the text
    row = P.PAPER_DR90.set_index(["paper_model", "paper_dataset"])["DR"]
    assert row[("ViT S-16", "CIFAR10")] == 0.70 and row[("ViT S-16", "Oxford-IIIT-Pets")] == 0.80
    assert row[("ViT S-32", "Oxford-IIIT-Pets")] == 0.70 and row[("ResNet18", "CIFAR10")] == 0.80
    assert row[("ResNet18", "Oxford-IIIT-Pets")] == 0.90 and row[("ResNet18", "CIFAR100")] == 0.50
    assert set(P.PAPER_DR90["paper_model"]) == {"ViT S-16", "ViT S-32", "ResNet18"}
    assert P.CLAIMS.set_index("claim").loc["gap_at_20pct", "bound"] == 0.05
    # the unsourced numbers (ResNet-50 accuracies, CKA curve) are not in the code any more
    assert not hasattr(R, "PAPER")
    assert R.PAPER_FRACTIONS == P.PROTOCOL["fractions"][0]


def test_paper_comparison_and_side_by_side_tables():
    dr = pd.DataFrame({"model": ["m", "m"], "dataset": ["cifar10", "elpv"],
                       "layer": "penultimate", "dim": 1280, "full_accuracy": 0.9,
                       "DR(0.9)": [0.8, 0.5], "gap_at_20pct": [0.03, 0.2], "gap_lo": 0.02,
                       "gap_hi": 0.04, "gap_points": 0.027, "n_train": 5000, "n_test": 10000})
    cmp = P.paper_comparison(dr)
    gap = cmp[cmp.quantity.str.startswith("gap")].iloc[0]
    assert gap.paper == 0.05 and gap.this_run == 0.03 and gap.verdict == "within"
    assert (gap.lo, gap.hi, gap.points, gap.n_train) == (0.02, 0.04, 0.027, 5000)
    drs = cmp[cmp.quantity.str.startswith("DR")]
    assert len(drs) == 3 and (drs.this_run == 0.8).all() and cmp.source.str.len().gt(0).all()
    # the verdict reads the interval, not the point: straddling 5% is inconclusive
    assert P.paper_comparison(dr.assign(gap_lo=0.045, gap_hi=0.06)).verdict.iloc[0] == \
        "inconclusive"
    assert P.paper_comparison(dr.assign(gap_lo=0.06, gap_hi=0.08)).verdict.iloc[0] == "outside"
    # one subset seed: no interval, no verdict
    assert P.paper_comparison(dr.assign(gap_lo=np.nan, gap_hi=np.nan)).verdict.iloc[0] == \
        "inconclusive"
    # the headline is read at the largest training set measured: the learning curve's 50,000
    lc = pd.DataFrame({"model": "m", "dataset": "cifar10", "fraction": [0.2, 0.2, 0.05],
                       "n_train": [1500, 50000, 50000], "n_test": 10000,
                       "gap": [0.14, 0.045, 0.2], "gap_lo": [0.13, 0.04, 0.19],
                       "gap_hi": [0.15, 0.049, 0.21], "gap_points": [0.12, 0.04, 0.18]})
    at = P.paper_comparison(dr, lc).iloc[0]
    assert (at.n_train, at.this_run, at.verdict) == (50000, 0.045, "within")
    small = P.paper_comparison(dr, lc[lc.n_train < 5000]).iloc[0]
    assert (small.n_train, small.this_run) == (5000, 0.03)          # the main table's 5,000
    side = P.dr_side_by_side(dr)
    assert list(side.columns) == ["source", "model", "dim", "CIFAR10", "CIFAR100", "Flowers",
                                  "Oxford-IIIT-Pets"]
    ours = side[side.source == "this run"].iloc[0]
    assert ours.CIFAR10 == 0.8 and np.isnan(ours.CIFAR100)
    assert side.set_index("model").loc["ResNet18", "Oxford-IIIT-Pets"] == 0.9


def test_dr_table_and_class_cost_from_runs():
    runs = pd.DataFrame({
        "model": "m", "dataset": "d", "layer": "penultimate",
        "method": ["full", "random", "random", "random", "random"],
        "fraction": [1.0, 0.1, 0.1, 0.2, 0.2], "seed": [0, 0, 1, 0, 1],
        "k": [10, 1, 1, 2, 2], "dim": 10, "accuracy": [0.8, 0.4, 0.6, 0.7, 0.74],
        "full_accuracy": 0.8})
    curve = R.accuracy_curve(runs)
    r = curve[(curve.method == "random") & (curve.fraction == 0.2)].iloc[0]
    assert r.accuracy == pytest.approx(0.72) and r.ratio == pytest.approx(0.9)
    # 95% t interval over 2 seeds: 12.706 * std / sqrt(2) / full
    assert r.ratio_ci95 == pytest.approx(12.706 * np.std([0.7, 0.74], ddof=1) / np.sqrt(2) / 0.8,
                                       rel=1e-3)
    assert set(curve.unit) == {"neurons"}
    dr = R.dr_table(curve, deltas=(0.9,))
    assert dr["DR(0.9)"].iloc[0] == pytest.approx(0.8)
    assert dr["gap_at_20pct"].iloc[0] == pytest.approx(0.1)
    assert dr["gap_points"].iloc[0] == pytest.approx(0.08)
    # runs without the bootstrap columns: no interval (NaN), no convergence share
    assert dr[["gap_lo", "gap_hi", "converged"]].isna().all(axis=None)

    per_class = pd.DataFrame({
        "model": "m", "dataset": "d", "layer": "penultimate",
        "method": ["full", "full", "random", "random"], "fraction": [1.0, 1.0, 0.1, 0.1],
        "seed": 0, "k": [10, 10, 1, 1], "class": ["cat", "dog", "cat", "dog"],
        "accuracy": [0.9, 0.8, 0.3, 0.7], "class_n_test": 100})
    cost = R.class_cost(per_class).iloc[0]
    assert cost.mean_class_drop == pytest.approx(0.35)
    assert cost.worst_class_drop == pytest.approx(0.6) and cost.worst_class == "cat"
    assert cost.unevenness == pytest.approx(0.25)
    assert 0 < cost.null < 0.15 and bool(cost.uneven)


def test_unevenness_null_is_calibrated_on_two_halves_of_one_models_predictions():
    """One model's per-image correctness on a test set (10 classes, uneven accuracies), split
    into two random stratified halves many times: the 'drop' between the halves is pure
    test-set noise, so it should exceed the 95% null band about 5% of the time."""
    rng = np.random.default_rng(0)
    acc = np.linspace(0.55, 0.97, 10)
    n_class = 100
    correct = rng.random((10, n_class)) < acc[:, None]          # fixed predictions
    exceed, trials = 0, 300
    for t in range(trials):
        perm = np.argsort(rng.random((10, n_class)), axis=1)
        a = np.take_along_axis(correct, perm[:, :n_class // 2], 1).mean(1)
        b = np.take_along_axis(correct, perm[:, n_class // 2:], 1).mean(1)
        band = R.unevenness_null(a, np.full(10, n_class // 2), draws=1000, seed=t)
        exceed += float(R.unevenness(a, b)) > band
    assert 0.01 <= exceed / trials <= 0.10
    # a band from ONE resample against the original (half the variance) is miscalibrated:
    # the test would catch a null built that way
    narrow = np.quantile(R.unevenness(acc, rng.binomial(50, acc, (4000, 10)) / 50), 0.95)
    assert narrow < 0.8 * R.unevenness_null(acc, np.full(10, 50))


def test_frontier_separates_neurons_from_directions():
    curve = pd.DataFrame({"dataset": "d", "model": "m", "layer": "penultimate",
                          "method": ["random", "random", "pca_top", "pca_top"],
                          "fraction": [0.1, 0.5, 0.1, 0.5], "ratio": [0.8, 0.95, 0.9, 0.97]})
    pts = R.frontier_table(curve)
    # pca_top dominates random at both fractions, yet random stays on the neurons frontier
    assert pts.on_frontier.all()
    assert pts.set_index("method").unit.to_dict() == {"random": "neurons", "pca_top": "directions"}


def test_scale_verdicts_read_the_bootstrap_intervals():
    lc = pd.DataFrame({"model": ["a", "a", "b", "b", "c", "c", "d", "d"], "fraction": 0.2,
                       "n_train": [1500, 50000] * 4,
                       "gap": [0.14, 0.08, 0.10, 0.09, 0.05, 0.09, 0.1, 0.1],
                       "gap_lo": [0.13, 0.07, 0.08, 0.08, 0.04, 0.08, np.nan, 0.09],
                       "gap_hi": [0.15, 0.09, 0.12, 0.10, 0.06, 0.10, np.nan, 0.11]})
    v = R.scale_verdicts(lc).set_index("model").verdict
    assert v.to_dict() == {"a": "shrinks", "b": "no clear change", "c": "grows",
                           "d": "inconclusive"}


def test_gap_intervals_resample_test_images_and_subsets():
    rng = np.random.default_rng(0)
    full = rng.random(4000) < 0.9
    subsets = full & (rng.random((5, 4000)) > 0.1)         # a clear 10% relative gap
    runs = pd.DataFrame({"method": ["full"] + ["random"] * 5 + ["pca_top"],
                         "fraction": [1.0] + [0.2] * 5 + [0.2], "seed": [0, *range(5), 0]})
    out = R.gap_intervals(runs, np.vstack([full, subsets, subsets[:1]]))
    rand = out[out.method == "random"]
    assert (rand.gap_lo > 0.07).all() and (rand.gap_hi < 0.13).all()
    assert (rand.gap_points_lo < rand.gap_lo).all()           # points: 0.9 x the relative gap
    assert out.loc[out.method != "random", list(R.GAP_INTERVALS)].isna().all(axis=None)


def test_pareto_frontier_keeps_only_non_dominated_points():
    cost = np.array([0.1, 0.1, 0.2, 0.3, 0.5, 1.0])
    value = np.array([0.5, 0.6, 0.55, 0.9, 0.8, 1.0])
    assert R.pareto_frontier(cost, value).tolist() == [False, True, False, True, False, True]


# --------------------------------------------------------------------------- CKA
def test_cka_of_the_full_subset_is_one_and_small_subsets_less():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 32)) + 0.5 * rng.normal(size=(60, 32))
    cka = R.subset_cka(X, sizes=(2, 32), seeds=range(3))
    full = cka[cka["size"] == 32]["cka"]
    assert np.allclose(full, 1.0, atol=1e-9)
    assert (cka[cka["size"] == 2]["cka"] < 0.99).all()


# --------------------------------------------------------------------------- sweep
def test_sweep_on_real_features_batches_every_view():
    """Real efficientnet_lite0 features of 4 sign-language digits per class."""
    from diffred import features
    tr = features("efficientnet_lite0", "sign_digits", "train", n_per_class=4, resolution=96,
                  progress=False)
    te = features("efficientnet_lite0", "sign_digits", "test", n_per_class=2, resolution=96,
                  progress=False)
    res = R.sweep(tr.X, tr.y, te.X, te.y, fractions=[0.01, 1.0], seeds=range(2),
                  methods=R.METHODS, classes=tr.classes, max_iter=30)
    runs = res.runs
    counts = runs.groupby("method").size().to_dict()
    assert counts == {"full": 1, "random": 4, "pca_top": 2, "pca_bottom": 2,
                      "randproj_uniform": 4, "randproj_gaussian": 4}
    assert runs.loc[runs.method == "random", "k"].tolist() == [12, 12, 1280, 1280]
    assert (runs.loc[runs.method == "pca_top", "k"] <= len(tr.y) - 1).all()
    assert runs["accuracy"].between(0, 1).all()
    assert runs["full_accuracy"].nunique() == 1
    assert set(res.per_class["class"]) == set(tr.classes)
    assert len(res.per_class) == len(runs) * len(tr.classes)
    assert (res.per_class["class_n_test"] == 2).all()           # 2 test images per class
    with pytest.raises(ValueError, match="unknown method 'lasso'"):
        R.sweep(tr.X, tr.y, te.X, te.y, methods=["lasso"])


def test_pca_baseline_uses_raw_components_like_the_official_code(monkeypatch):
    """The PCA probes get x @ V (uncentred, unscaled) and standardize=False; neuron subsets
    and projections are standardised by the probe engine."""
    import diffred.core.probe as probe
    calls = []
    real = probe.probe_accuracy

    def spy(Xtr, ytr, Xte, yte, **kw):
        calls.append((np.array(Xtr), kw.get("standardize", True), "columns" in kw and
                      kw["columns"] is not None))
        return real(Xtr, ytr, Xte, yte, **kw)
    monkeypatch.setattr(probe, "probe_accuracy", spy)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(60, 8)) * np.arange(1, 9) + 5).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    R.sweep(X, y, X, y, fractions=[0.25, 1.0], seeds=[0], methods=("random", "pca_top"),
            max_iter=20)
    _, V = R.pca_basis(X)
    pca = [c for c in calls if not c[1]]
    assert len(pca) == 1 and np.allclose(pca[0][0], X @ V, atol=1e-4)
    assert all(c[1] for c in calls if c is not pca[0])


def test_flattened_stage_is_the_whole_map_and_pooled_is_its_mean():
    from diffred import features
    f = features("efficientnet_lite0", "sign_digits", "test", ["blocks.5", "blocks.5:flat"],
                 n=6, resolution=64, progress=False)
    pooled, flat = f["blocks.5"].X, f["blocks.5:flat"].X
    assert pooled.shape == (6, 192) and flat.shape == (6, 192 * 2 * 2)   # C x H x W at 64 px
    assert np.allclose(flat.reshape(6, 192, 4).mean(-1), pooled, atol=1e-5)
    with pytest.raises(ValueError, match="unknown layer 'blocks.99:flat'"):
        features("efficientnet_lite0", "sign_digits", "test", "blocks.99:flat", n=6,
                 resolution=64, progress=False)


def test_paper_models_preset_runs_offline_with_random_init(monkeypatch, tmp_path):
    """The paper's backbones by timm name go through the chapter's path (hub loader,
    native resolution, penultimate features, sweep); offline, with random weights."""
    import timm

    from diffred.core.models import load_model
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model",
                        lambda name, pretrained=False, **kw: real(name, pretrained=False, **kw))
    load_model.cache_clear()
    try:
        res = R.run_sweeps(list(P.PAPER_MODELS), ["sign_digits"], fractions=[0.5, 1.0],
                           seeds=range(1), train_subset={"n_per_class": 1},
                           test_subset={"n_per_class": 1}, resolution=None, max_iter=5)
    finally:
        load_model.cache_clear()
    dims = res.runs.groupby("model").dim.first().to_dict()
    assert dims == {"timm:resnet18": 512, "timm:resnet50": 2048,
                    "timm:vit_small_patch16_224.augreg_in1k": 384,
                    "timm:vit_small_patch16_224.augreg_in21k": 384}
    assert res.runs.accuracy.between(0, 1).all()


def test_cached_sweep_computes_once_and_reads_back_the_same_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), np.repeat(np.arange(2), 20)
    X[:, 0] += 3 * y
    calls = []

    def compute():
        calls.append(1)
        return R.sweep(X, y, X, y, fractions=[0.5, 1.0], seeds=range(2), max_iter=20,
                       classes=["a", "b"])
    spec = {"features": "abc", "max_iter": 20}
    first = R.cached_sweep(spec, compute)
    again = R.cached_sweep(spec, compute)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first.runs, again.runs, check_dtype=False)
    pd.testing.assert_frame_equal(first.per_class, again.per_class, check_dtype=False)
    R.cached_sweep({**spec, "max_iter": 21}, compute)
    assert len(calls) == 2




def test_closing_note_and_findings_are_computed_from_the_tables():
    from diffred.studies.diffuse import report as show
    dr = pd.DataFrame({"model": ["m", "m", "m"], "dataset": "cifar10",
                       "layer": ["penultimate", "blocks.5:flat", "blocks.5"], "dim": [1280, 4800, 192],
                       "full_accuracy": 0.9, "DR(0.9)": [0.8, 0.95, 0.5],
                       "gap_at_20pct": [0.123, 0.01, 0.2], "gap_lo": 0.119, "gap_hi": 0.127,
                       "gap_points": 0.111, "n_train": 5000, "n_test": 10000,
                       "converged": [1.0, 0.96, 1.0]})
    cmp = P.paper_comparison(dr)
    side = P.dr_side_by_side(dr)
    lc = pd.DataFrame({"model": "m", "dataset": "cifar10", "n_per_class": [150, 500],
                       "n_train": [1500, 5000], "fraction": 0.2, "full_accuracy": [0.8, 0.85],
                       "accuracy": [0.7, 0.77], "ratio": [0.875, 0.906], "gap": [0.125, 0.094],
                       "gap_lo": [0.115, 0.084], "gap_hi": [0.135, 0.104],
                       "gap_points": [0.1, 0.08]})
    cost = pd.DataFrame({"model": "m", "dataset": "cifar10", "layer": "penultimate",
                         "fraction": [0.05, 0.2], "unevenness": [0.2, 0.05], "null": 0.1,
                         "uneven": [True, False], "worst_class": "cat"})
    note = show.closing_note(cmp, side, lc, dr[dr.layer != "penultimate"])
    assert "m (5,000 training images): 12.3% [11.9, 12.7] of the full accuracy (11.1 points)" \
        in note and "outside the paper's 5%" in note
    assert "| paper (ICLR 2023) | ViT S-16 | 384 | 0.70 |" in note and "5000" in note
    assert "blocks.5:flat" in note
    text = show.findings(dr, cmp, R.scale_verdicts(lc), cost, dr[dr.layer != "penultimate"])
    assert "shrinks" in text and "1 of 1 pairs" in text and "blocks.5:flat 0.95 vs pooled 0.50" in text
    assert "12.3% [11.9, 12.7]" in text
    assert "In 1 of 3 layers some probes stopped at the iteration cap" in text
    assert "iteration cap" not in show.findings(dr.assign(converged=1.0), cmp,
                                                R.scale_verdicts(lc), cost, dr.iloc[:0])
    assert "1 of 1 backbone × dataset pairs" in show.cost_text(cost)
