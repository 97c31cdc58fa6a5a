"""Chapter 2 (Dalvi et al. 2020): correlation clustering, ranking, fine-tuning, word alignment."""
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from diffred.studies.neurons import method as neurons


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


def test_cluster_representatives_are_seeded_and_uniform_over_each_cluster():
    labels = np.array([3, 1, 3, 2, 1, 3, 3, 5])          # clusters {0,2,5,6}, {1,4}, {3}, {7}
    reps = neurons.cluster_representatives(labels, seed=4)
    assert len(reps) == 4 and sorted(labels[reps].tolist()) == [1, 2, 3, 5]
    assert np.array_equal(reps, np.sort(reps))
    assert np.array_equal(reps, neurons.cluster_representatives(labels, seed=4))
    draws = np.array([neurons.cluster_representatives(labels, seed=s) for s in range(4000)])
    assert all(sorted(labels[r].tolist()) == [1, 2, 3, 5] for r in draws)
    big = np.array([r[labels[r] == 3][0] for r in draws])  # the representative of cluster 3
    counts = np.array([(big == i).sum() for i in (0, 2, 5, 6)])
    assert counts.sum() == 4000
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 16.3                                     # χ²(3) at p = 0.001
    pair = np.array([r[labels[r] == 1][0] for r in draws])
    assert 0.45 < np.mean(pair == 1) < 0.55


def test_layer_counts_of_kept_columns():
    assert neurons.layer_counts(np.array([0, 3, 4, 9, 10]), width=4, n_layers=4).tolist() == \
        [2, 1, 2, 0]


def test_elastic_net_ranking_recovers_planted_neurons():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 60)).astype(np.float32)
    planted = [5, 17, 42, 51]
    y = (X[:, planted] @ rng.normal(size=(4, 3)) * 3).argmax(1)
    order, info = neurons.rank_neurons(X, y, device="cpu")
    assert info["converged"] and info["gradient_mapping"] <= 1e-4
    assert set(order[:4].tolist()) == set(planted)
    assert sorted(order.tolist()) == list(range(60))


def _official_objective(X, y, W, b, l1, l2):
    """NeuroX linear_probe.py: mean CE + l1 * sum|W| + l2 * sqrt(sum W^2) (bias unpenalised)."""
    z = X.astype(np.float64) @ W + b
    z -= z.max(1, keepdims=True)
    ce = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
    return ce + l1 * np.abs(W).sum() + l2 * np.sqrt((W ** 2).sum())


def test_elastic_net_objective_is_the_official_form_with_the_l2_norm():
    from diffred.core.probe import fit_elastic_net
    # hand example: 2 neurons, 2 classes; neuron 0 carries the label, neuron 1 is noise
    X = np.array([[2.0, 0.5], [1.5, -1.0], [-1.0, 0.3], [-2.0, -0.2], [0.5, 1.0],
                  [-0.5, -0.7]], np.float32) + 3.0         # raw, uncentred activations
    y = np.array([1, 1, 0, 0, 1, 0])
    l1, l2 = 1e-2, 5e-2
    W, b, info = fit_elastic_net(X, y, 2, l1=l1, l2=l2, tol=1e-7, max_iter=20000, device="cpu")
    assert info["converged"]
    assert info["objective"] == pytest.approx(_official_objective(X, y, W, b, l1, l2), abs=1e-5)
    # it is the minimum of that objective: no nearby point is lower
    rng = np.random.default_rng(0)
    best = _official_objective(X, y, W, b, l1, l2)
    for _ in range(200):
        dW, db = rng.normal(size=W.shape) * 1e-3, rng.normal(size=b.shape) * 1e-3
        assert _official_objective(X, y, W + dW, b + db, l1, l2) >= best - 1e-7
    # the norm (not its square) has a dead zone: W = 0 exactly once l2 exceeds the Frobenius
    # norm of the loss gradient at W = 0 (the optimal bias there is the log class ratio)
    Xc = X - X.mean(0)
    g0 = Xc.T @ (np.full(len(y), 0.5)[:, None] - np.eye(2)[y]) / len(y)
    dead = float(np.linalg.norm(g0))
    W0, _, _ = fit_elastic_net(X, y, 2, l1=0.0, l2=1.01 * dead, tol=1e-8, max_iter=20000,
                               device="cpu")
    W1, _, _ = fit_elastic_net(X, y, 2, l1=0.0, l2=0.9 * dead, tol=1e-8, max_iter=20000,
                               device="cpu")
    assert np.abs(W0).max() == 0.0 and np.abs(W1).max() > 1e-3


def test_signal_check_flags_an_oracle_at_the_majority_rate_on_dev():
    """Near chance is decided on dev: the oracle's dev accuracy against the dev majority rate.
    Poisoning the test labels (all one class, or shuffled) changes nothing."""
    y_train = np.array([0] * 70 + [1] * 30)
    y_dev = np.array([0] * 140 + [1] * 60)                 # majority rate 0.7 on dev
    rng = np.random.default_rng(0)

    def task(y_test):
        return neurons.TaskData("t", "m", np.zeros((100, 2)), y_train, np.zeros((200, 2)),
                                y_dev, np.zeros((len(y_test), 2)), y_test, ["a", "b"], 2)
    clean = task(np.array([0] * 50 + [1] * 50))
    near = neurons.signal_check(clean, 0.73)               # 0.73 ± 0.062 reaches 0.7
    assert near["majority_dev_accuracy"] == pytest.approx(0.7) and near["near_chance"]
    assert not neurons.signal_check(clean, 0.85)["near_chance"]
    assert near["oracle_dev_ci95"] == pytest.approx(1.96 * np.sqrt(0.73 * 0.27 / 200))
    for poisoned in (np.zeros(100, int), rng.permutation(clean.y_test)):
        for oracle_dev in (0.73, 0.85):
            assert neurons.signal_check(task(poisoned), oracle_dev) == \
                neurons.signal_check(clean, oracle_dev)


def test_weight_mass_order_takes_each_class_top_neuron_first():
    W = np.array([[5.0, 0.0], [0.1, 0.2], [0.0, 3.0], [1.0, 0.1]])
    assert neurons.weight_mass_order(W).tolist()[:2] in ([0, 2], [2, 0])
    assert neurons.weight_mass_order(W).tolist()[-1] == 1


def test_last_subtoken_alignment_on_a_hand_written_sentence():
    from diffred.core.extract import last_subtoken_index
    from diffred.core.models import load_model
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




def test_finetuning_is_cached_and_deterministic_by_seed(tmp_path, monkeypatch):
    import torch

    from diffred.core import finetune
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    cfg = finetune.FineTuneConfig(epochs=1)
    a = finetune.finetune("minilm_l6", "sst2", 16, seed=0, config=cfg, log=None)
    state_a = {k: v.clone() for k, v in a.classifier.state_dict().items()}
    # a second call is a cache hit: it never trains
    monkeypatch.setattr(finetune, "_train", lambda *a, **k: pytest.fail("trained again"))
    hit = finetune.finetune("minilm_l6", "sst2", 16, seed=0, config=cfg, log=None)
    assert hit.key == a.key == hit.backbone.fingerprint
    assert all(torch.equal(state_a[k], v) for k, v in hit.classifier.state_dict().items())
    monkeypatch.undo()
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    finetune.STORE.remove(a.key)                         # retrain from scratch: same weights
    again = finetune.finetune("minilm_l6", "sst2", 16, seed=0, config=cfg, log=None)
    assert all(torch.equal(state_a[k], v) for k, v in again.classifier.state_dict().items())
    other = finetune.finetune("minilm_l6", "sst2", 16, seed=1, config=cfg, log=None)
    assert other.key != a.key
    assert not torch.equal(state_a["classifier.weight"],
                           other.classifier.state_dict()["classifier.weight"])
    # the tuned encoder's features are cached under its own name and fingerprint, and the
    # model's own accuracy comes from its last-layer [CLS] features
    from diffred.core.extract import features
    f = features(a.backbone, "sst2", "test", layer="all", n=8, pooling="cls", progress=False)
    assert f[6].meta["model"] == "minilm_l6+ft:sst2" and f[6].meta["weights"] == a.key
    assert 0.0 <= a.accuracy(f[6].X, f[6].y) <= 1.0 and a.logits(f[6].X).shape == (8, 2)
    with pytest.raises(ValueError, match="sentence task"):
        finetune.finetune("minilm_l6", "ud_pos", 10, config=cfg, log=None)


def test_paper_vs_run_reads_protocol_rows_with_signal_only():
    """Only protocol rows (token tasks, fine-tuned [CLS]) with usable signal enter the claims;
    the untuned "pretrained, mean" rows and near-chance tasks never move the verdict."""
    import pandas as pd

    from diffred.studies.neurons import paper
    rows = [("pos", "pretrained, last sub-token", False, 95.0),
            ("chunk", "pretrained, last sub-token", False, 96.0),
            ("ner", "pretrained, last sub-token", False, 97.0),
            ("sst2", "fine-tuned, [CLS]", False, 95.5),
            ("sst2", "pretrained, mean", False, 10.0),        # not protocol: ignored
            ("cola", "fine-tuned, [CLS]", True, 1.0)]         # near chance: ignored
    summary = pd.DataFrame([dict(model="m", dataset=d, features=f, delta_layer=1,
                                 delta_neuron=1, near_chance=near, pct_removable=r,
                                 pct_of_oracle=99.0, minimal_pct=100 - r)
                            for d, f, near, r in rows])
    sweep = summary.assign(threshold=0.3, pct_redundant=summary.pct_removable)
    general = pd.DataFrame(dict(model="m", threshold=[0.3], pct_redundant=[40.0], rows=[100],
                                dataset="pos"))
    table = paper.paper_vs_run(general, summary, sweep, 0.3)
    assert list(table.rule) == [paper.general_verdict.rule, paper.removable_verdict.rule,
                                paper.transfer_verdict.rule]
    assert (table.tasks.iloc[1:] == "4 of 5 protocol tasks (near chance on dev left out)").all()
    assert table["range over tasks"].iloc[1] == "95.0–97.0"
    assert list(table.verdict) == ["yes", "yes", "yes"]
    low = summary.assign(pct_removable=summary.pct_removable - 20, pct_of_oracle=90.0)
    low_table = paper.paper_vs_run(general, low, low.assign(threshold=0.3, pct_redundant=50.0
                                                            + low.pct_removable * 0), 0.3)
    assert list(low_table.verdict) == ["no", "no", "no"]
    one = summary[summary.dataset == "pos"]
    one_table = paper.paper_vs_run(general, one, one.iloc[:0].assign(threshold=0.3,
                                                                     pct_redundant=0.0), 0.3)
    assert list(one_table.verdict) == ["inconclusive"] * 3     # one task: no interval
    assert "no interval" in one_table["this run"].iloc[0]
