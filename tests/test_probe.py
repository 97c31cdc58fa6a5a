import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from diffred import LinearProbe, features, probe_accuracy


@pytest.fixture(scope="module")
def cifar():
    tr = features("efficientnet_lite0", "cifar10", "train", n_per_class=100, resolution=128,
                  progress=False)
    te = features("efficientnet_lite0", "cifar10", "test", n_per_class=50, resolution=128,
                  progress=False)
    return np.asarray(tr.X), tr.y, np.asarray(te.X), te.y


def sklearn_accuracy(Xtr, ytr, Xte, yte, C):
    """scikit-learn converged (tol 1e-6): at its default 1e-4 it stops short of the optimum
    of these weakly regularised problems by a few test images itself."""
    s = StandardScaler().fit(Xtr)
    clf = LogisticRegression(C=C, tol=1e-6, max_iter=5000).fit(s.transform(Xtr), ytr)
    return clf.score(s.transform(Xte), yte)


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_matches_sklearn_within_half_a_point(cifar, C):
    Xtr, ytr, Xte, yte = cifar
    ours = probe_accuracy(Xtr, ytr, Xte, yte, C=C).accuracy[0]
    ref = sklearn_accuracy(Xtr, ytr, Xte, yte, C)
    print(f"C={C}: diffred {ours:.4f}  sklearn {ref:.4f}")
    assert ours > 0.5 and abs(ours - ref) <= 0.005


def test_batched_subsets_equal_individual_fits(cifar):
    Xtr, ytr, Xte, yte = cifar
    rng = np.random.default_rng(0)
    cols = [rng.permutation(1280)[:k] for k in (8, 8, 64, 256)]
    batched = probe_accuracy(Xtr, ytr, Xte, yte, columns=cols, C=0.05)
    for i, c in enumerate(cols):
        ref = sklearn_accuracy(Xtr[:, c], ytr, Xte[:, c], yte, 0.05)
        assert abs(batched.accuracy[i] - ref) <= 0.01
    assert batched.per_class.shape == (4, 10)
    assert np.allclose(batched.per_class.mean(1), batched.accuracy, atol=1e-6)  # balanced test
    assert batched.accuracy[3] > batched.accuracy[0]
    twice = probe_accuracy(Xtr, ytr, Xte, yte, columns=[cols[2], cols[2][::-1], cols[0]], C=0.05)
    assert twice.accuracy[0] == twice.accuracy[1] == batched.accuracy[2]


def test_projections_and_sklearn_style_probe(cifar):
    Xtr, ytr, Xte, yte = cifar
    P = np.random.default_rng(0).normal(size=(1280, 32))
    r = probe_accuracy(Xtr, ytr, Xte, yte, projections=[P], C=0.05)
    ref = sklearn_accuracy(Xtr @ P, ytr, Xte @ P, yte, 0.05)
    assert abs(r.accuracy[0] - ref) <= 0.01
    probe = LinearProbe(C=0.05).fit(Xtr, ytr)
    assert probe.score(Xte, yte) == pytest.approx(probe_accuracy(Xtr, ytr, Xte, yte, C=0.05).accuracy[0])


def _objective(Xs, y, W, b, C):
    """scikit-learn's LogisticRegression objective / N, for each probe: (B,)."""
    import torch
    logits = torch.einsum("nd,bdc->bnc", Xs, W) + b.unsqueeze(1)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y.expand(len(W), -1),
                                           reduction="none").mean(1)
    return ce + 0.5 / (C * len(y)) * (W * W).sum((1, 2))


def test_batched_lbfgs_converges_each_probe_with_and_without_whitening(cifar):
    import torch
    from diffred.probe import _lbfgs, _SharedColumns
    Xtr, ytr, _, _ = cifar
    X = torch.tensor(Xtr)
    X = (X - X.mean(0)) / X.std(0)
    y = torch.tensor(ytr, dtype=torch.int64)
    rng = np.random.default_rng(1)
    masks = torch.zeros(4, 1280, dtype=torch.bool)
    for row, k in enumerate((4, 32, 128, 256)):
        masks[row, torch.as_tensor(rng.permutation(1280)[:k])] = True
    results = {}
    for whiten in (False, True):
        W, b, n_iter = _lbfgs(_SharedColumns(X, masks), y, 10, C=0.5, max_iter=1000,
                              tol=1e-5, precondition=whiten)
        assert torch.all(W[~masks] == 0)                       # weights stay on each subset
        results[whiten] = _objective(X, y, W, b, 0.5)
        assert len(set(n_iter.tolist())) > 1                   # probes stop on their own
        assert n_iter.max() < 1000
    # same optimum either way (objective equal to float32 precision)
    assert torch.allclose(results[False], results[True], rtol=1e-4)


def test_whitening_survives_a_singular_covariance():
    """Duplicate columns and a huge C make Σ + λI singular in float32: more ridge, no crash."""
    import torch
    from diffred.probe import _SharedColumns, _whitening
    X = torch.randn(100, 10)
    X = torch.cat([X, X[:, :3]], 1)
    L = _whitening(_SharedColumns(X, torch.ones(2, 13, dtype=torch.bool)), 3, C=1e9, n=100)
    (probes, coords, factors), = L.groups
    assert probes.tolist() == [0, 1] and coords.shape == (2, 13)
    assert torch.isfinite(factors).all() and torch.all(factors.diagonal(dim1=1, dim2=2) > 0)
