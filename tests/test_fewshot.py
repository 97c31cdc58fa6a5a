"""Chapter 3 (few-shot soft masking): sampler, importance, batched classifiers, smoke run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from diffred import fewshot
from diffred.fewshot import (episode_accuracy, gather_episodes, importance,
                             reduce_to_span, sample_episodes, two_way_importance)
from diffred.probe import fit_logreg


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


def test_class_statistics():
    X = torch.tensor([[1.0, -2.0], [3.0, 2.0], [5.0, 0.0]])
    mu, sd, absmean = fewshot.class_statistics(X, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(mu, torch.tensor([[2.0, 0.0], [5.0, 0.0]]))
    assert torch.allclose(sd, torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(absmean, torch.tensor([[2.0, 2.0], [5.0, 0.0]]))


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
    for d in np.argsort(-np.abs(conf.delta_acc.to_numpy()))[:3]:
        keep = torch.tensor([j for j in range(X.shape[1]) if j != d])
        acc = episode_accuracy(S[..., keep], Q[..., keep], 5, "nc", normalize=False).mean()
        assert conf.delta_acc[d] == pytest.approx(acc.item() - base, abs=1e-6)


def test_soft_mask_comparison_is_paired(tiny_pool):
    masks = fewshot.soft_mask_comparison(tiny_pool, shots=(1,), n_query=4, n_episodes=12)
    assert set(masks.method) == set(fewshot.METHODS)
    none = masks[masks.method == "no mask"]
    assert (none.gain == 0).all()
    row = masks[(masks.method == "soft mask (support)") & (masks.classifier == "lr")].iloc[0]
    lr_none = none[none.classifier == "lr"].iloc[0]
    assert row.gain == pytest.approx(row.acc - lr_none.acc)
    assert {"model", "weights", "dataset", "subset", "seed"} <= set(masks.columns)


