import numpy as np
import pytest

from diffred import MinibatchCKA, cka_matrix, linear_cka


def reference_cka(X, Y):
    """Kornblith et al. eq. (kernel form), written directly."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    hsic = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.fixture
def reps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30))
    Y = X @ rng.normal(size=(30, 20)) + 0.5 * rng.normal(size=(200, 20))
    return X, Y


def test_matches_numpy_reference(reps):
    X, Y = reps
    assert linear_cka(X, Y) == pytest.approx(reference_cka(X, Y), rel=1e-10)
    assert cka_matrix([X, Y])[0, 1] == pytest.approx(reference_cka(X, Y), rel=1e-10)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling(reps):
    X, Y = reps
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(30, 30)))
    for debiased in (False, True):
        base = linear_cka(X, Y, debiased=debiased)
        assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, rel=1e-8)
        assert linear_cka(3.7 * X, 0.2 * Y, debiased=debiased) == pytest.approx(base, rel=1e-8)
    assert linear_cka(X, X) == pytest.approx(1.0)


def test_debiased_cka_of_independent_features_is_near_zero():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(500, 100)), rng.normal(size=(500, 100))
    assert abs(linear_cka(X, Y, debiased=True)) < 0.02
    assert linear_cka(X, Y) > 0.1  # the biased estimator is not: that is the point


def test_minibatch_cka_agrees_with_full_batch(reps):
    X, Y = reps
    m = MinibatchCKA()
    for i in range(0, 200, 50):
        m.update(X[i:i + 50], Y[i:i + 50])
    assert m.value() == pytest.approx(linear_cka(X, Y, debiased=True), abs=0.05)


def test_rows_must_match():
    with pytest.raises(ValueError, match="same rows"):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))


def test_streaming_correlation_matches_numpy_in_any_chunking():
    from diffred.core.similarity import StreamingCorrelation, correlation_linkage, neuron_correlation
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(301, 9)) + 100.0).astype(np.float32)    # a large shift: no cancellation
    X[:, 4] = X[:, 1] * 2 - 1                                     # perfectly correlated pair
    X[:, 7] = 5.0                                                 # a constant neuron
    ref = np.eye(9)
    varying = [0, 1, 2, 3, 4, 5, 6, 8]
    ref[np.ix_(varying, varying)] = np.corrcoef(X[:, varying].astype(np.float64), rowvar=False)
    for rows in (301, 64, 7):
        corr = neuron_correlation((X[i:i + rows] for i in range(0, len(X), rows)), device="cpu")
        assert np.allclose(corr, ref, atol=1e-5)
    assert corr[1, 4] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 rows"):
        acc = StreamingCorrelation("cpu")
        acc.update(X[:1])
        acc.correlation()
    Z = correlation_linkage(corr, overwrite=False)
    assert Z.shape == (8, 4) and Z[0, 2] == pytest.approx(0.0, abs=1e-6)   # 1 and 4 merge first
    assert sorted(Z[0, :2].astype(int)) == [1, 4]
