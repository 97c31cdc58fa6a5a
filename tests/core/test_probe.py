import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from diffred import LinearProbe, features, probe_accuracy


@pytest.fixture(scope="module")
def cifar():
    tr = features("efficientnet_lite0", "cifar10", "train", n_per_class=100, resolution=128,
                  precision="fp32", progress=False)
    te = features("efficientnet_lite0", "cifar10", "test", n_per_class=50, resolution=128,
                  precision="fp32", progress=False)
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


def test_probes_report_their_test_hits_and_whether_they_converged(cifar):
    Xtr, ytr, Xte, yte = cifar
    rng = np.random.default_rng(1)
    cols = [rng.permutation(1280)[:k] for k in (16, 16, 256)]
    P = [rng.normal(size=(1280, 32)).astype(np.float32)]
    for views in ({"columns": cols}, {"projections": P}):
        done = probe_accuracy(Xtr, ytr, Xte, yte, C=0.05, **views)
        assert done.correct.shape == (len(done.accuracy), len(yte))
        assert np.allclose(done.correct.mean(1), done.accuracy)       # the same hits
        assert done.converged.all()
        capped = probe_accuracy(Xtr, ytr, Xte, yte, C=0.05, max_iter=2, **views)
        assert not capped.converged.any()


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

    from diffred.core._lbfgs import SharedColumns, lbfgs
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
        W, b, n_iter = lbfgs(SharedColumns(X, masks), y, 10, C=0.5, max_iter=1000,
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

    from diffred.core._lbfgs import SharedColumns, whitening
    X = torch.randn(100, 10)
    X = torch.cat([X, X[:, :3]], 1)
    L = whitening(SharedColumns(X, torch.ones(2, 13, dtype=torch.bool)), 3, C=1e9, n=100)
    (probes, coords, factors), = L.groups
    assert probes.tolist() == [0, 1] and coords.shape == (2, 13)
    assert torch.isfinite(factors).all() and torch.all(factors.diagonal(dim1=1, dim2=2) > 0)


def test_both_solvers_reach_the_same_optimum(cifar):
    """L-BFGS and Nesterov minimise the same objective: same value, same test predictions."""
    import torch

    from diffred.core.probe import fit_logreg, standardization
    Xtr, ytr, Xte, yte = cifar
    rng = np.random.default_rng(2)
    cols = np.stack([rng.permutation(1280)[:48] for _ in range(3)])          # (3, 48)
    Ztr, Zte = (torch.tensor(X[:, cols]).permute(1, 0, 2) for X in (Xtr, Xte))  # (3, N, 48)
    mean, scale = standardization(Ztr, dim=1)
    Ztr, Zte = (Ztr - mean) / scale, (Zte - mean) / scale
    y = torch.tensor(ytr, dtype=torch.int64)
    fits = {s: fit_logreg(Ztr, y, 10, C=0.05, max_iter=20000, tol=1e-6, solver=s)
            for s in ("lbfgs", "nesterov")}
    objective = {s: torch.stack([_objective(Ztr[i], y, W[i:i + 1], b[i:i + 1], 0.05)[0]
                                 for i in range(3)]) for s, (W, b) in fits.items()}
    assert torch.allclose(objective["lbfgs"], objective["nesterov"], rtol=1e-5)
    pred = {s: torch.baddbmm(b.unsqueeze(1), Zte, W).argmax(-1) for s, (W, b) in fits.items()}
    assert (pred["lbfgs"] != pred["nesterov"]).sum() <= 1                  # 1,500 predictions
    with pytest.raises(ValueError, match="unknown solver 'adam'; valid choices: lbfgs, nesterov"):
        fit_logreg(Ztr, y, 10, solver="adam")


def test_eval_sets_equal_separate_calls(cifar):
    Xtr, ytr, Xte, yte = cifar
    rng = np.random.default_rng(3)
    dev, test = slice(0, 200), slice(200, None)
    cols = [rng.permutation(1280)[:k] for k in (16, 16, 200)]
    P = [rng.normal(size=(1280, 24))]
    for views in ({"columns": cols}, {"projections": P}):
        both = probe_accuracy(Xtr, ytr, Xte[test], yte[test], eval_sets={
            "dev": (Xte[dev], yte[dev]), "train": (Xtr, ytr)}, C=0.05, **views)
        alone = probe_accuracy(Xtr, ytr, Xte[test], yte[test], C=0.05, **views)
        dev_only = probe_accuracy(Xtr, ytr, Xte[dev], yte[dev], C=0.05, **views)
        np.testing.assert_array_equal(both.accuracy, alone.accuracy)
        np.testing.assert_array_equal(both.per_class, alone.per_class)
        np.testing.assert_array_equal(both.eval_accuracy["dev"], dev_only.accuracy)
        on_train = probe_accuracy(Xtr, ytr, Xtr, ytr, C=0.05, **views)   # the train set as test
        np.testing.assert_array_equal(both.eval_accuracy["train"], on_train.accuracy)
        assert alone.eval_accuracy == {}
    with pytest.raises(ValueError, match="'test'"):
        probe_accuracy(Xtr, ytr, Xte, yte, eval_sets={"test": (Xte, yte)})
    with pytest.raises(ValueError, match="dev set: 200 rows but 199 labels"):
        probe_accuracy(Xtr, ytr, Xte, yte, eval_sets={"dev": (Xte[dev], yte[1:200])})


def test_linear_probe_follows_scikit_learn_conventions(cifar):
    Xtr, ytr, Xte, yte = cifar
    names = np.array([f"class {c}" for c in range(10)])
    probe = LinearProbe(C=0.05, max_iter=200)
    assert vars(probe) == {"C": 0.05, "max_iter": 200, "tol": probe.tol, "standardize": True,
                           "device": None, "precision": None}         # __init__ only stores
    with pytest.raises(ValueError, match="not fitted"):
        probe.predict(Xte)
    assert probe.fit(Xtr, names[ytr]) is probe
    assert probe.classes_.tolist() == names.tolist() and probe.n_features_in_ == 1280
    assert isinstance(probe.coef_, np.ndarray) and probe.coef_.shape == (10, 1280)
    assert isinstance(probe.intercept_, np.ndarray) and probe.intercept_.shape == (10,)
    scores = probe.decision_function(Xte)
    by_hand = ((Xte - probe.mean_) / probe.scale_) @ probe.coef_.T + probe.intercept_
    np.testing.assert_allclose(scores, by_hand, rtol=1e-4, atol=1e-4)
    assert probe.predict(Xte[:3]).tolist() == names[scores[:3].argmax(1)].tolist()
    assert probe.score(Xte, names[yte]) > 0.5
    for bad, message in ((dict(C=-1.0), "C must be a positive number, got -1.0"),
                         (dict(max_iter=0), "max_iter must be an integer >= 1, got 0"),
                         (dict(tol="small"), "tol must be a positive number, got 'small'")):
        with pytest.raises(ValueError, match=message):
            LinearProbe(**bad).fit(Xtr, ytr)
    with pytest.raises(ValueError, match=r"X must be 2-D .* got shape \(1280,\)"):
        probe.fit(Xtr[0], ytr[:1])
    with pytest.raises(ValueError, match=r"one label per row of X \(1000\), got shape \(999,\)"):
        probe.fit(Xtr, ytr[1:])
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        probe.fit(Xtr[:5], np.zeros(5))
    with pytest.raises(ValueError, match="X has 64 features, but this LinearProbe was fitted "
                                         "with 1280"):
        probe.predict(Xte[:, :64])


def _standardised(cifar):
    import torch
    Xtr, ytr, _, _ = cifar
    X = torch.tensor(Xtr)
    return (X - X.mean(0)) / X.std(0), torch.tensor(ytr, dtype=torch.int64)


def _masks(widths, seed):
    import torch
    rng = np.random.default_rng(seed)
    masks = torch.zeros(len(widths), 1280, dtype=torch.bool)
    for row, k in enumerate(widths):
        masks[row, torch.as_tensor(rng.permutation(1280)[:k])] = True
    return masks


def test_fp32_solver_is_unchanged(cifar):
    """precision="fp32" is the solver of before mixed precision: it reaches the optimum —
    scikit-learn's (float64, converged far past our stopping test), computed in the same run —
    in about as many iterations as recorded.  No recorded objective values: they hold only for
    one CPU's float32 summation order (AVX2 / AVX-512 / AMX kernels move the stopping
    iteration by one or two: AVX2 76 where AVX-512 took 77) and for one preprocessing of the
    images.  Each problem solved alone (same run) must land where the batch of four did:
    batching changes nothing but speed."""
    import torch

    from diffred.core._lbfgs import SharedColumns, lbfgs
    X, y = _standardised(cifar)
    masks = _masks((4, 32, 128, 256), 1)
    optimum = []
    for mask in masks:                                   # the reference, in this run
        cols = mask.nonzero()[:, 0]
        clf = LogisticRegression(C=1.0, tol=1e-9, max_iter=20000).fit(
            X[:, cols].double().numpy(), y.numpy())
        W = torch.zeros(1, X.shape[1], 10, dtype=torch.float64)
        W[0, cols] = torch.as_tensor(clf.coef_.T)
        optimum.append(_objective(X.double(), y, W, torch.as_tensor(clf.intercept_)[None], 1.0))
    optimum = torch.cat(optimum).float()
    for whiten, iterations in ((False, [16, 38, 77, 55]), (True, [16, 32, 61, 40])):
        W, b, n_iter = lbfgs(SharedColumns(X, masks), y, 10, C=1.0, max_iter=500, tol=3e-5,
                             precondition=whiten, precision="fp32")
        got = _objective(X, y, W, b, 1.0)
        slack = np.maximum(3, 0.1 * np.array(iterations))
        assert np.all(np.abs(n_iter.numpy() - iterations) <= slack), (n_iter, iterations)
        assert torch.all(got >= optimum * (1 - 1e-5)), (got, optimum)     # never below it
        assert torch.allclose(got, optimum, rtol=1e-3, atol=1e-4), (got, optimum)
        alone = [lbfgs(SharedColumns(X, masks[i:i + 1]), y, 10, C=1.0, max_iter=500,
                       tol=3e-5, precondition=whiten, precision="fp32") for i in range(4)]
        alone = torch.cat([_objective(X, y, Wi, bi, 1.0) for Wi, bi, _ in alone])
        assert torch.allclose(alone, got, rtol=1e-4, atol=1e-5), (alone, got)


def test_mixed_precision_reaches_the_fp32_optimum(cifar):
    """bf16 products, then float32 to tol: the same objective and test accuracy as fp32."""
    import torch

    from diffred.core._lbfgs import SharedColumns, lbfgs
    X, y = _standardised(cifar)
    masks = _masks((8, 64, 256, 1280), 4)
    value = {}
    for precision in ("fp32", "bf16"):
        W, b, n_iter = lbfgs(SharedColumns(X, masks), y, 10, C=1.0, max_iter=500, tol=3e-5,
                             precondition=True, precision=precision)
        assert n_iter.max() < 500 and torch.all(W[~masks] == 0)
        value[precision] = _objective(X, y, W, b, 1.0)
    # equal within the slack of the stopping test (at tol 3e-5 fp32 itself lands ~1e-4 off)
    assert torch.allclose(value["bf16"], value["fp32"], rtol=1e-3, atol=2e-4)
    Xtr, ytr, Xte, yte = cifar
    cols = [np.flatnonzero(m) for m in masks.numpy()]
    acc = {p: probe_accuracy(Xtr, ytr, Xte, yte, columns=cols, precision=p).accuracy
           for p in ("fp32", "bf16")}
    assert np.abs(acc["bf16"] - acc["fp32"]).max() <= 0.003
    assert acc["fp32"][-1] > 0.6                       # the full layer: a real probe


def test_auto_precision_follows_bf16_support(cifar, monkeypatch):
    import diffred.core.probe as probe
    Xtr, ytr, Xte, yte = cifar
    cols = [np.arange(64), np.arange(300)]
    for supported in (False, True):
        monkeypatch.setattr(probe, "bf16_products", lambda device: supported)
        assert probe._precision("auto", "cpu", 1280) == ("bf16" if supported else "fp32")
        assert probe._precision("auto", "cpu", 64) == "fp32"            # too narrow to pay
        auto = LinearProbe(C=0.05).fit(Xtr, ytr).coef_
        forced = LinearProbe(C=0.05, precision="bf16" if supported else "fp32").fit(Xtr, ytr).coef_
        np.testing.assert_array_equal(auto, forced)
        if supported:                                  # mixed precision takes another path
            assert not np.array_equal(auto, LinearProbe(C=0.05, precision="fp32")
                                      .fit(Xtr, ytr).coef_)
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid choices: auto, fp32, "
                                         "bf16"):
        probe_accuracy(Xtr, ytr, Xte, yte, columns=cols, precision="fp16")


def test_probe_solvers_live_only_in_the_probe_engine():
    """One implementation of each probe solver and of the standardisation (issue 11)."""
    from pathlib import Path

    import diffred
    package = Path(diffred.__file__).parent
    engine = {"core/probe.py", "core/_lbfgs.py"}
    markers = ("t * l2 / norm", "def _two_loop", "def _top_eigenvalue", "momentum * (",
               "clamp_min(1e-6)")
    engine_text = "".join((package / name).read_text() for name in engine)
    assert all(m in engine_text for m in markers)                  # the markers are not stale
    elsewhere = [f"{path}: {m}" for path in sorted(package.rglob("*.py"))
                 if str(path.relative_to(package)) not in engine
                 for m in markers if m in path.read_text()]
    assert not elsewhere
