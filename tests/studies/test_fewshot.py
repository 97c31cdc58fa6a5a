"""Chapter 3 (few-shot soft masking): sampler, importance, batched classifiers, smoke run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from diffred.core.probe import fit_logreg
from diffred.core.stats import benjamini_hochberg, sign_test_pvalues
from diffred.studies.fewshot import method as fewshot
from diffred.studies.fewshot import paper as fewshot_paper
from diffred.studies.fewshot import report as fewshot_report
from diffred.studies.fewshot.method import (
    episode_accuracy,
    gather_episodes,
    importance,
    reduce_to_span,
    sample_episodes,
    two_way_importance,
)
from diffred.studies.fewshot.resample import half_indices, pool_spread
from diffred.studies.fewshot.runs import select_mask_settings


@pytest.fixture(scope="module")
def tiny_pool():
    """Real features: efficientnet_lite0 on 8 sign-language digits per class (80 images)."""
    return fewshot.load_pool("efficientnet_lite0", "sign_digits", n_per_class=8, views=2,
                             view_candidates_per_class=3, progress=False)


# --------------------------------------------------------------------------- sampler
def test_episodes_are_disjoint_balanced_and_seeded():
    y = np.repeat(np.arange(7), 12)
    ep = sample_episodes(y, n_way=5, k_shot=3, n_query=4, n_episodes=50, seed=3)
    assert ep.support.shape == (50, 5, 3) and ep.query.shape == (50, 5, 4)
    for e in range(50):
        assert len(set(ep.classes[e])) == 5
        s, q = ep.support[e].ravel(), ep.query[e].ravel()
        assert not set(s) & set(q)
        assert len(set(s)) == s.size and len(set(q)) == q.size
        for i, c in enumerate(ep.classes[e]):            # episode label i is pool class c
            assert (y[ep.support[e, i]] == c).all() and (y[ep.query[e, i]] == c).all()
    again = sample_episodes(y, 5, 3, 4, 50, seed=3)
    other = sample_episodes(y, 5, 3, 4, 50, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(
        (ep.classes, ep.support, ep.query), (again.classes, again.support, again.query)))
    assert not np.array_equal(ep.support, other.support)


def test_support_restricted_and_too_small_classes_rejected():
    y = np.repeat(np.arange(5), 10)
    allowed = np.tile(np.arange(10) < 2, 5)          # first two items of each class
    ep = sample_episodes(y, 5, 2, 8, 20, seed=0, support_from=allowed)
    assert allowed[ep.support].all() and not allowed[ep.query].any()
    with pytest.raises(ValueError, match="n_way=5"):
        sample_episodes(y, 5, 5, 6, 1)               # 11 items per class needed, 10 exist


# --------------------------------------------------------------------------- importance
def test_importance_matches_formula_by_hand():
    mu1, mu2 = torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])
    s1, s2 = torch.tensor([1.0, 1.0, 1.0, 0.5]), torch.tensor([1.0, 1.0, 3.0, 1.5])
    raw = torch.tensor([1.0, 0.0, 1.0, 2.0])          # 2|mu1-mu2| / (s1+s2), by hand
    expected = raw / raw.norm()
    assert torch.allclose(two_way_importance(mu1, mu2, s1, s2), expected, atol=1e-6)
    multi = importance(torch.stack([mu1, mu2]), torch.stack([s1, s2]))
    assert torch.allclose(multi, expected, atol=1e-6)
    # 3 classes, means 0,1,2 (population std sqrt(2/3)) vs 0,0,3 (std sqrt(2)), sigma 1 and 2
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 3.0]])
    sd = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    raw = torch.tensor([2 * np.sqrt(2 / 3) / 1, 2 * np.sqrt(2) / 2], dtype=torch.float32)
    assert torch.allclose(importance(mu, sd), raw / raw.norm(), atol=1e-6)


def test_two_way_importance_is_the_precursors_formula():
    """Channel_Importance_FSL LR.py, literally: 2/((std_1+eps)/(d+eps)+(std_2+eps)/(d+eps)),
    then F.normalize — on a hand example, with a zero-gap and a zero-spread channel."""
    mu1, mu2 = torch.tensor([0.3, 0.1, 0.5, 0.2]), torch.tensor([0.1, 0.1, 0.0, 0.6])
    s1, s2 = torch.tensor([0.1, 0.2, 0.05, 0.0]), torch.tensor([0.3, 0.2, 0.15, 0.4])
    d, e = (mu1 - mu2).abs(), 1e-12
    precursor = 2 / ((s1 + e) / (d + e) + (s2 + e) / (d + e))
    precursor = torch.nn.functional.normalize(precursor, p=2, dim=0, eps=e)
    by_hand = torch.tensor([2 * 0.2 / 0.4, 0.0, 2 * 0.5 / 0.2, 2 * 0.4 / 0.4])
    assert torch.allclose(precursor, by_hand / by_hand.norm(), atol=1e-6)
    assert torch.allclose(two_way_importance(mu1, mu2, s1, s2), precursor, atol=1e-6)
    # the book's N-way formula at N = 2 is the same number
    assert torch.allclose(importance(torch.stack([mu1, mu2]), torch.stack([s1, s2])),
                          precursor, atol=1e-6)


def test_class_statistics():
    X = torch.tensor([[1.0, -2.0], [3.0, 2.0], [5.0, 0.0]])
    mu, sd, absmean = fewshot.class_statistics(X, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(mu, torch.tensor([[2.0, 0.0], [5.0, 0.0]]))
    assert torch.allclose(sd, torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(absmean, torch.tensor([[2.0, 2.0], [5.0, 0.0]]))
    _, sd1, _ = fewshot.class_statistics(X, torch.tensor([0, 0, 1]), 2, ddof=1)
    assert torch.allclose(sd1[0], torch.tensor([2.0, 8.0]).sqrt())    # torch.std, unbiased


# --------------------------------------------------------------------------- classifiers
def test_batched_lr_matches_sklearn_on_real_episodes(tiny_pool):
    ep = sample_episodes(tiny_pool.y, 5, 2, 5, 6, seed=0)
    S, Q = gather_episodes(tiny_pool.X, ep)
    acc = episode_accuracy(S, Q, 5, "lr", tol=1e-7).numpy()
    Sn, Qn = (torch.nn.functional.normalize(Z, dim=-1).numpy() for Z in (S, Q))
    y_s, y_q = np.arange(5).repeat(2), np.arange(5).repeat(5)
    sk = np.array([(LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(Sn[e], y_s)
                    .predict(Qn[e]) == y_q).mean() for e in range(6)])
    np.testing.assert_allclose(acc, sk, atol=1e-6)
    # at the default tolerance (scikit-learn's 1e-4) at most one near-tied query may differ
    loose = episode_accuracy(S, Q, 5, "lr").numpy()
    assert np.abs(loose - sk).max() <= 1 / 25 + 1e-6
    # and the fitted probabilities agree, not just the argmax
    Zs, Zq = reduce_to_span(torch.tensor(Sn), torch.tensor(Qn))
    W, b = fit_logreg(Zs, torch.tensor(y_s), 5, C=1.0, max_iter=3000, tol=1e-4,
                      solver="nesterov")
    p = torch.softmax(torch.baddbmm(b[:, None], Zq, W), -1).numpy()
    p_sk = np.stack([LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(Sn[e], y_s)
                     .predict_proba(Qn[e]) for e in range(6)])
    np.testing.assert_allclose(p, p_sk, atol=1e-3)


def test_reduce_to_span_preserves_geometry():
    g = torch.Generator().manual_seed(0)
    S, Q = torch.randn(3, 6, 40, generator=g), torch.randn(3, 9, 40, generator=g)
    Zs, Zq = reduce_to_span(S, Q)
    assert Zs.shape == (3, 6, 6) and Zq.shape == (3, 9, 6)
    # inner products with the support are preserved exactly
    assert torch.allclose(Zs @ Zs.transpose(1, 2), S @ S.transpose(1, 2), atol=1e-4)
    assert torch.allclose(Zq @ Zs.transpose(1, 2), Q @ S.transpose(1, 2), atol=1e-4)


def test_nearest_centroid_by_hand():
    S = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])               # 2-way 1-shot
    Q = torch.tensor([[[0.9, 0.1], [0.8, 0.3], [0.2, 0.9], [0.6, 0.5]]])  # labels 0,0,1,1
    assert episode_accuracy(S, Q, 2, "nc").item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="valid choices: lr, nc"):
        episode_accuracy(S, Q, 2, "svm")


def test_confounder_drop_one_matches_brute_force(tiny_pool):
    conf = fewshot.confounders(tiny_pool, n_way=5, k_shot=1, n_query=5, n_episodes=20,
                               seed=1, episode_batch=7)
    X = torch.nn.functional.normalize(torch.tensor(tiny_pool.X), dim=-1)
    ep = sample_episodes(tiny_pool.y, 5, 1, 5, 20, seed=1)
    S, Q = gather_episodes(X, ep)
    base = episode_accuracy(S, Q, 5, "nc", normalize=False).mean().item()
    for d in np.argsort(-np.abs(conf.delta_accuracy.to_numpy()))[:3]:
        keep = torch.tensor([j for j in range(X.shape[1]) if j != d])
        acc = episode_accuracy(S[..., keep], Q[..., keep], 5, "nc", normalize=False).mean()
        assert conf.delta_accuracy[d] == pytest.approx(acc.item() - base, abs=1e-6)


def test_soft_mask_comparison_is_paired(tiny_pool):
    masks = fewshot.soft_mask_comparison(tiny_pool, shots=(1,), n_query=4, n_episodes=12)
    assert set(masks.method) == set(fewshot.METHODS)
    none = masks[masks.method == "no mask"]
    assert (none.gain == 0).all()
    row = masks[(masks.method == "soft mask (support)") & (masks.classifier == "lr")].iloc[0]
    lr_none = none[none.classifier == "lr"].iloc[0]
    assert row.gain == pytest.approx(row.accuracy - lr_none.accuracy)
    assert {"model", "weights", "dataset", "subset", "seed"} <= set(masks.columns)




def test_soft_mask_grid_rows_and_references(tiny_pool):
    masks = fewshot.soft_mask_comparison(tiny_pool, shots=(1,), n_query=4, n_episodes=12,
                                         shrinks=(0.0, 1.0), topk_fractions=(0.01, 0.2),
                                         references=False, classifiers=("nc",))
    soft = masks[masks.method == "soft mask (support)"]
    hard = masks[masks.method == "hard top-k (support)"]
    assert sorted(soft.shrink) == [0.0, 1.0] and len(hard) == 4
    assert set(masks.method) == {"no mask", "soft mask (support)", "hard top-k (support)"}
    assert sorted(hard.topk.unique()) == [13, 256]


# --------------------------------------------------------------------------- statistics
def test_benjamini_hochberg_matches_scipy():
    from scipy.stats import false_discovery_control
    rng = np.random.default_rng(0)
    for p in (rng.uniform(size=1280), np.r_[rng.uniform(0, 1e-4, 30), rng.uniform(size=300)],
              np.array([0.01, 0.01, 0.04, 0.04, 1.0]), np.array([0.5])):
        np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p),
                                   rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.2, 1.5]))


def test_sign_test_pvalues_match_scipy_binomtest():
    from scipy.stats import binomtest
    up, down = np.array([0, 3, 10, 7, 0]), np.array([0, 3, 1, 0, 9])
    p = sign_test_pvalues(up, down)
    expected = [1.0] + [binomtest(u, u + d).pvalue for u, d in zip(up[1:], down[1:])]
    np.testing.assert_allclose(p, expected, rtol=1e-10)


def test_confounders_are_corrected_for_multiplicity(tiny_pool):
    conf = fewshot.confounders(tiny_pool, n_way=5, k_shot=1, n_query=5, n_episodes=30, seed=2)
    np.testing.assert_allclose(conf.q_value, benjamini_hochberg(conf.p_value))
    assert ((conf.effect != "no clear effect") == (conf.q_value <= 0.05)).all()
    counts = fewshot_paper.confounder_counts(conf)
    assert counts["expected_by_chance"] == pytest.approx(0.05 * 1280)
    assert counts["discoveries"] == counts["helps"] + counts["hurts"] <= counts["uncorrected"]


def test_gaussian_simulation_shows_the_theory():
    """Synthetic (the paper's model): dropping high-variance, close-centroid dimensions helps
    nearest centroid a lot at 1 shot, much less at 50."""
    sim = fewshot.confounder_simulation.uncached((1, 50), n_episodes=300)
    one, many = sim.iloc[0], sim.iloc[1]
    assert one.gain - one.gain_ci95 > 0.05
    assert many.gain + many.gain_ci95 < one.gain - one.gain_ci95
    assert (sim.data == "simulated (Gaussian model)").all()


def _cells(diffs, ci=0.01, shots=None):
    """fraction_curves rows: per cell the 1% row (difference ``d``) and the all-dims row."""
    rows = []
    for i, diff in enumerate(diffs):
        for f, acc, d in ((0.01, 0.5 + diff, diff), (1.0, 0.5, 0.0)):
            rows.append({"model": "m", "dataset": f"d{i}", "n_way": 5,
                         "shots": shots[i] if shots else 1, "ranking": "oracle",
                         "fraction_requested": f, "k": 13 if f < 1 else 1280, "accuracy": acc,
                         "ci95": ci, "diff_full": d, "diff_full_ci95": ci, "n_episodes": 600})
    return pd.DataFrame(rows)


def test_one_percent_verdict_is_an_equivalence_test():
    """Inside the ±1-point margin with a tight interval: "recovers" (even when significantly
    below 0); a noisy cell that covers 0: "inconclusive", not "recovers"; clear effects beyond
    the margin: "above full" / "below full"."""
    v = fewshot_paper.one_percent_verdict(_cells([0.0, -0.004, 0.0, 0.05, -0.05],
                                                 shots=[1, 1, 1, 1, 1]).assign(
        diff_full_ci95=lambda t: np.where(t.dataset == "d2", 0.03, 0.002)))
    assert list(v.verdict) == ["recovers", "recovers", "inconclusive", "above full",
                               "below full"]
    assert list(v.reproduced) == [True, True, False, True, False]
    assert (v.tost_lo < v.difference).all() and (v.difference < v.tost_hi).all()
    with pytest.raises(ValueError, match="no fraction 0.02"):
        fewshot_paper.one_percent_verdict(_cells([0.0]), fraction=0.02)


def test_the_claim_needs_a_cell_that_survives_the_family_correction():
    """A cell that holds at 5% but not at 5%/n (n cells): one of n cannot make the claim."""
    tight = fewshot_paper.one_percent_verdict(_cells([0.0, -0.05], ci=0.002))
    assert fewshot_paper.claim_one_verdict(tight) == "yes"
    edge = fewshot_paper.one_percent_verdict(_cells([0.006] + [-0.05] * 9, ci=0.005))
    assert edge.verdict.iloc[0] == "above full" and edge.reproduced.sum() == 1
    assert fewshot_paper.claim_one_verdict(edge) == "inconclusive"
    below = fewshot_paper.one_percent_verdict(_cells([-0.05, -0.04], ci=0.002))
    assert fewshot_paper.claim_one_verdict(below) == "no"


def test_fade_contrast_reads_the_slope_on_log_shots():
    fading = fewshot_paper.one_percent_verdict(pd.concat(
        [_cells([0.04 - 0.01 * np.log2(k) + e], shots=[k]).assign(dataset=f"d{j}")
         for j, e in enumerate((0.0, 0.003, -0.002)) for k in (1, 2, 4, 8)]))
    f = fewshot_paper.fade_contrast(fading)
    assert f["n_pairs"] == 3 and f["mean"] == pytest.approx(-0.01, abs=1e-9)
    assert f["verdict"] == "yes" and f["hi"] < 0
    growing = fading.assign(difference=-fading.difference)
    assert fewshot_paper.fade_contrast(growing)["verdict"] == "no"
    one_pair = fading[fading.dataset == "d0"]
    assert fewshot_paper.fade_contrast(one_pair)["verdict"] == "inconclusive"


def test_confounder_enrichment_by_fisher():
    rng = np.random.default_rng(0)
    n = 400
    within, centroid = rng.uniform(size=n), rng.uniform(size=n)
    quadrant = (within > np.median(within)) & (centroid < np.median(centroid))
    helps = quadrant & (rng.uniform(size=n) < 0.5)          # helpers only in the quadrant
    conf = pd.DataFrame(dict(within_var=within, centroid_dist=centroid,
                             q_value=np.where(helps, 0.01, 0.5),
                             delta_accuracy=np.where(helps, 0.01, 0.0)))
    e = fewshot_paper.confounder_enrichment(conf)
    assert e["verdict"] == "yes" and e["lo"] > 1 and e["p_value"] < 1e-6
    assert e["table"].sum() == n
    scattered = conf.assign(q_value=np.where(rng.uniform(size=n) < 0.1, 0.01, 0.5),
                            delta_accuracy=0.01)
    assert fewshot_paper.confounder_enrichment(scattered)["verdict"] == "inconclusive"
    none = conf.assign(q_value=0.5)
    assert fewshot_paper.confounder_enrichment(none)["verdict"] == "inconclusive"


def test_mask_gain_verdict_over_cells():
    def masks(gains):
        return pd.DataFrame(dict(method="soft mask (support)", shots=1, shrink=0.3, gain=gains))
    assert fewshot_paper.mask_gain_verdict(masks([0.02, 0.03, 0.025, 0.018]))["verdict"] == "yes"
    assert fewshot_paper.mask_gain_verdict(masks([-0.02, -0.03, -0.025]))["verdict"] == "no"
    assert fewshot_paper.mask_gain_verdict(masks([0.05, -0.04, 0.01]))["verdict"] == \
        "inconclusive"
    assert fewshot_paper.mask_gain_verdict(masks([0.05]))["verdict"] == "inconclusive"


# --------------------------------------------------------------------------- held-out selection
def test_split_is_stratified_disjoint_and_seeded(tiny_pool):
    sel, rep = fewshot.split_indices(tiny_pool.y, tiny_pool.has_views, 0.5, seed=0)
    assert not set(sel) & set(rep) and len(sel) + len(rep) == len(tiny_pool.y)
    for c in range(tiny_pool.n_classes):
        for views in (True, False):
            n = ((tiny_pool.y == c) & (tiny_pool.has_views == views)).sum()
            in_sel = ((tiny_pool.y[sel] == c) & (tiny_pool.has_views[sel] == views)).sum()
            assert in_sel == round(0.5 * n)
    again, _ = fewshot.split_indices(tiny_pool.y, tiny_pool.has_views, 0.5, seed=0)
    other, _ = fewshot.split_indices(tiny_pool.y, tiny_pool.has_views, 0.5, seed=1)
    assert np.array_equal(sel, again) and not np.array_equal(sel, other)
    a, b = fewshot.split_pool(tiny_pool, 0.5, 0)
    assert (a.meta["part"], b.meta["part"]) == ("selection", "report")
    np.testing.assert_array_equal(b.X, tiny_pool.X[rep])


def _selection(pool, sel_idx):
    """The chapter's selection path on one pool: selection part -> grid -> rule."""
    grid_s, grid_k = (0.0, 0.3, 1.0), (0.01, 0.2)
    table = fewshot.soft_mask_comparison.uncached(
        pool.take(sel_idx, "selection"), shots=(1,), n_query=2, n_episodes=40, seed=0,
        shrinks=grid_s, topk_fractions=grid_k, references=False)
    return table, select_mask_settings(table, grid_s, grid_k)


def _poisoned(pool, idx, seed):
    """Labels of ``idx`` shifted to another class, their features and views scrambled."""
    rng = np.random.default_rng(seed)
    X, y, V = pool.X.copy(), pool.y.copy(), pool.views.copy()
    y[idx] = (y[idx] + 1) % pool.n_classes
    X[idx] = rng.permutation(X[idx].ravel()).reshape(X[idx].shape)
    V[idx] = rng.permutation(V[idx].ravel()).reshape(V[idx].shape)
    return fewshot.Pool(X, y, pool.classes, V, pool.has_views.copy(), dict(pool.meta))


def test_poisoned_report_part_does_not_change_the_selection(tiny_pool):
    sel, rep = fewshot.split_indices(tiny_pool.y, tiny_pool.has_views, 0.5, seed=0)
    table, (choice, rule) = _selection(tiny_pool, sel)
    table_p, (choice_p, rule_p) = _selection(_poisoned(tiny_pool, rep, 0), sel)
    pd.testing.assert_frame_equal(table, table_p)
    assert choice == choice_p
    pd.testing.assert_frame_equal(rule, rule_p)
    # control: the same poison on the selection part does change what the rule sees
    table_s, _ = _selection(_poisoned(tiny_pool, sel, 0), sel)
    assert not np.allclose(table.accuracy, table_s.accuracy)


def test_selection_rule_ties_go_to_the_first_grid_value():
    rows = []
    for s, acc in ((0.0, 0.6004), (0.3, 0.6), (1.0, 0.55)):
        rows.append({"method": "soft mask (support)", "shrink": s, "topk_fraction": np.nan,
                     "accuracy": acc})
        for f, a in ((0.01, 0.4), (0.2, 0.5)):
            rows.append({"method": "hard top-k (support)", "shrink": s, "topk_fraction": f,
                         "accuracy": a})
    table = pd.DataFrame(rows)
    choice, rule = select_mask_settings(table, (0.0, 0.3, 1.0), (0.01, 0.2))
    assert choice == {"shrink": 0.0, "topk_fraction": 0.2}
    choice, _ = select_mask_settings(table, (0.3, 0.0, 1.0), (0.01, 0.2))
    assert choice["shrink"] == 0.3                    # tie within 0.1 points: listed first
    assert rule.chosen.sum() == 2


# --------------------------------------------------------------------------- precursor, report
def test_precursor_two_way_runs_and_reports_paired_gain(tiny_pool):
    pre = fewshot.precursor_two_way(tiny_pool, shots=(1,), n_query=4, n_episodes=30)
    assert set(pre.method) == {"none", "oracle"} and (pre.n_way == 2).all()
    o = pre[pre.method == "oracle"].iloc[0]
    n = pre[pre.method == "none"].iloc[0]
    assert o.gain == pytest.approx(o.accuracy - n.accuracy)
    curves = fewshot.fraction_curves(tiny_pool, (1,), (0.01, 1.0), n_way=2, n_query=4,
                                     n_episodes=30, ci_ddof=0)
    table = fewshot_report.precursor_table(pre, curves)
    assert len(table) == 1 and "top 1% vs all" in table.columns


# --------------------------------------------------------------------------- the pool's share
def _gaussian_pool(n_per_class: int, seed: int = 0) -> fewshot.Pool:
    """Synthetic: 5 Gaussian classes in 64 dimensions, 4 informative; images differ in how
    noisy they are (a per-image scale), so which images a pool holds moves its accuracy."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((5, 64))
    centres[:, :4] = rng.normal(0, 1.5, (5, 4))
    y = np.repeat(np.arange(5), n_per_class)
    scale = rng.choice([0.3, 3.0], size=len(y))
    X = (np.abs(centres[y] + scale[:, None] * rng.normal(size=(len(y), 64))) + 0.1)
    meta = dict(model="synthetic", weights="-", dataset=f"gauss{n_per_class}", subset="-",
                seed=seed)
    return fewshot.Pool(X.astype(np.float32), y, list(range(5)), None,
                        np.zeros(len(y), bool), meta)


def test_half_indices_halve_every_class_without_replacement():
    y = np.repeat(np.arange(3), [10, 7, 4])
    idx = half_indices(y, np.random.default_rng(0))
    assert len(set(idx)) == len(idx) and list(idx) == sorted(idx)
    assert [int((y[idx] == c).sum()) for c in range(3)] == [5, 3, 2]


def test_pool_spread_widens_when_the_pool_shrinks():
    """The pool's standard error of the 1%-vs-all difference grows as the pool shrinks (about
    as 1/sqrt(n)), and the verdict's interval carries it where it was measured."""
    se = {}
    for n in (30, 120):
        s = pool_spread.uncached(_gaussian_pool(n), (1,), 0.05, n_query=5, n_halves=30,
                                 n_episodes=150, classifier="nc")
        assert list(s.shots) == [1] and s.n_halves.iloc[0] == 30
        se[n] = float(s.pool_se.iloc[0])
    assert se[30] > 1.3 * se[120] > 0
    with pytest.raises(ValueError, match="n_halves must be >= 2"):
        pool_spread.uncached(_gaussian_pool(30), n_halves=1)
    too_small = pool_spread.uncached(_gaussian_pool(8), (1,), 0.05, n_query=5, n_halves=2,
                                     n_episodes=10)
    assert too_small.empty                      # 4 images per half cannot hold 1 + 5
    cells = _cells([0.0, 0.0], ci=0.004)
    spread = pd.DataFrame(dict(model="m", dataset=["d0"], n_way=5, shots=1, pool_se=0.01))
    v = fewshot_paper.one_percent_verdict(cells, spread)
    assert list(v.interval_over) == ["episodes and pool", "episodes (pool fixed)"]
    assert v.difference_ci95.iloc[0] > v.difference_ci95.iloc[1] == pytest.approx(0.004)
    assert list(v.verdict) == ["inconclusive", "recovers"]
