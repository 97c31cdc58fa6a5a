"""Chapter 1 (diffred.diffuse): subsets, baselines, DR metric, frontier, CKA, smoke run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffred import diffuse as R


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
def test_diffuse_redundancy_on_a_known_curve():
    f = np.array(R.PAPER_FRACTIONS)
    ratio = np.minimum(1.0, f / 0.2 * 0.9)      # reaches 0.9 exactly at 20% of neurons
    assert R.diffuse_redundancy(f, ratio, 0.9) == pytest.approx(0.8)
    assert R.diffuse_redundancy(f, ratio, 1.0) == pytest.approx(0.7)    # first f with ratio 1
    # the paper's ResNet-50 / CIFAR-10 accuracies: 0.832 / 0.891 = 0.934 at 20%
    acc = {0.01: .371, 0.05: .695, 0.1: .779, 0.2: .832, 0.5: .874, 1.0: .891}
    fr, a = np.array(list(acc)), np.array(list(acc.values()))
    assert R.diffuse_redundancy(fr, a / a[-1], 0.9) == pytest.approx(0.9)   # ratio .874 at 10%
    assert R.diffuse_redundancy(fr, a / a[-1], 0.95) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        R.diffuse_redundancy([0.1, 0.2], [1.0], 0.9)


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
    dr = R.dr_table(curve, deltas=(0.9,))
    assert dr["DR(0.9)"].iloc[0] == pytest.approx(0.8)
    assert dr["gap_at_20pct"].iloc[0] == pytest.approx(0.1)

    per_class = pd.DataFrame({
        "model": "m", "dataset": "d", "layer": "penultimate",
        "method": ["full", "full", "random", "random"], "fraction": [1.0, 1.0, 0.1, 0.1],
        "seed": 0, "k": [10, 10, 1, 1], "class": ["cat", "dog", "cat", "dog"],
        "accuracy": [0.9, 0.8, 0.3, 0.7]})
    cost = R.class_cost(per_class).iloc[0]
    assert cost.mean_class_drop == pytest.approx(0.35)
    assert cost.worst_class_drop == pytest.approx(0.6) and cost.worst_class == "cat"


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
    with pytest.raises(ValueError, match="unknown method 'lasso'"):
        R.sweep(tr.X, tr.y, te.X, te.y, methods=["lasso"])


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


