"""Chapter 2 (Dalvi et al. 2020): correlation clustering, ranking, word alignment, smoke run."""
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from diffred import neurons


def _correlated(rng, n=400, groups=5, copies=4):
    base = rng.normal(size=(n, groups))
    X = np.concatenate([base + 0.4 * rng.normal(size=(n, groups)) * (i + 1) for i in range(copies)], 1)
    return (X * 3 + 7).astype(np.float32)       # offset: the streamed shift must handle it


def test_streamed_correlation_matches_numpy_and_clustering_matches_scipy():
    X = _correlated(np.random.default_rng(0))
    X[:, 2] = 1.5                               # a dead neuron: correlates 0 with every other
    corr = neurons.neuron_correlation(neurons.layer_chunks([X[:, :7], X[:, 7:]], chunk_rows=37),
                                      device="cpu")
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(X.T.astype(np.float64))
    ref[2, :] = ref[:, 2] = 0
    ref[2, 2] = 1
    np.testing.assert_allclose(corr, ref, atol=1e-5)
    dist = 1 - np.abs(ref)
    np.fill_diagonal(dist, 0)
    Z_ref = linkage(squareform(dist, checks=False), method="average")
    Z = neurons.correlation_linkage(corr)
    np.testing.assert_allclose(Z[:, 2], Z_ref[:, 2], atol=1e-5)
    for c in (0.2, 0.3, 0.6):
        a, b = neurons.clusters_at(Z, c), fcluster(Z_ref, c, "distance")
        # same partition (ids may be permuted)
        assert len({(i, j) for i, j in zip(a, b)}) == len(set(a)) == len(set(b))
    curve = neurons.redundancy_curve(Z, [0.05, 0.3, 0.99])
    assert curve.pct_redundant.is_monotonic_increasing
    assert curve.pct_redundant.iloc[-1] > curve.pct_redundant.iloc[0]


def test_cluster_representatives_one_per_cluster_lowest_index():
    reps = neurons.cluster_representatives(np.array([3, 1, 3, 2, 1, 2]))
    assert reps.tolist() == [0, 1, 3]


def test_elastic_net_ranking_recovers_planted_neurons():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 60)).astype(np.float32)
    planted = [5, 17, 42, 51]
    y = (X[:, planted] @ rng.normal(size=(4, 3)) * 3).argmax(1)
    order = neurons.rank_neurons(X, y, device="cpu")
    assert set(order[:4].tolist()) == set(planted)
    assert sorted(order.tolist()) == list(range(60))


def test_weight_mass_order_takes_each_class_top_neuron_first():
    W = np.array([[5.0, 0.0], [0.1, 0.2], [0.0, 3.0], [1.0, 0.1]])
    assert neurons.weight_mass_order(W).tolist()[:2] in ([0, 2], [2, 0])
    assert neurons.weight_mass_order(W).tolist()[-1] == 1


def test_last_subtoken_alignment_on_a_hand_written_sentence():
    from diffred.extract import last_subtoken_index
    from diffred.models import load_model
    tok = load_model("minilm_l6").tokenizer
    words = ["The", "unbelievably", "tokenization", "works", "."]
    enc = tok([words], is_split_into_words=True)
    last = last_subtoken_index(enc.word_ids(0), len(words))
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    # each word's last piece is at its position, and the next piece starts a new word
    assert pieces[last[0]] == "the" and pieces[last[3]] == "works" and pieces[last[4]] == "."
    assert pieces[last[1]].startswith("##") and pieces[last[2]].startswith("##")
    assert "".join(p.lstrip("#") for p in pieces[last[0] + 1:last[1] + 1]) == "unbelievably"
    assert "".join(p.lstrip("#") for p in pieces[last[1] + 1:last[2] + 1]) == "tokenization"
    assert np.all(np.diff(last) > 0)


def test_layer_selector_picks_lowest_layer_within_delta():
    sel = neurons.LayerSelector()
    sel.dev_ = np.array([0.5, 0.89, 0.95, 0.97, 0.96])
    # oracle = all layers = 0.96; δ=1% -> 0.9504; δ=3% -> 0.9312; δ=10% -> 0.864
    assert [sel.select(d) for d in (0, 1, 3, 10)] == [3, 3, 2, 1]


def test_bad_task_names_the_choices():
    with pytest.raises(ValueError, match="unknown task 'pos'.*ud_pos"):
        neurons.load_task("minilm_l6", "pos", 10, 10, 10)


