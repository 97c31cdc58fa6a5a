"""Chapter 4 (transfer basin): block shuffle, training, interpolation, BN recalibration,
criticality, the trainable-architecture registry."""

import numpy as np
import pytest
import torch

from diffred.core import training
from diffred.core.models import ARCHITECTURES, Arch, build_model
from diffred.studies.transfer import basin as B
from diffred.studies.transfer import method as T
from diffred.studies.transfer import paper as F

torch.set_num_threads(2)


# --------------------------------------------------------------------------- block shuffle
@pytest.mark.parametrize("block", [1, 2, 4, 8])
def test_block_shuffle_is_a_fixed_invertible_permutation(block):
    perm = T.block_permutation(16, block, seed=3)
    assert sorted(perm.tolist()) == list(range(256))          # a permutation
    x = torch.arange(2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    y = T.block_shuffle(x, block, seed=3)
    inverse = torch.from_numpy(np.argsort(perm))
    assert torch.equal(y.flatten(-2)[..., inverse].reshape(x.shape), x)   # invertible
    # the same permutation for every image and channel
    for img in range(2):
        for ch in range(3):
            assert torch.equal(y[img, ch].flatten(), x[img, ch].flatten()[torch.from_numpy(perm)])
    assert not torch.equal(y, x)                              # it really moves pixels


def test_block_shuffle_keeps_blocks_intact_and_is_seeded():
    x = torch.arange(64).reshape(1, 1, 8, 8)
    y = T.block_shuffle(x, 4, seed=0)
    blocks = {tuple(x[0, 0, r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)}
    moved = {tuple(y[0, 0, r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)}
    assert blocks == moved
    assert not np.array_equal(T.block_permutation(32, 1, 0), T.block_permutation(32, 1, 1))
    assert np.array_equal(T.block_permutation(32, 2, 5), T.block_permutation(32, 2, 5))


def test_block_shuffle_identity_at_full_size_and_clear_error():
    x = torch.randint(0, 255, (3, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(T.block_shuffle(x, 12), x)
    with pytest.raises(ValueError, match=r"block size 5.*valid choices: 1, 2, 3, 4, 6, 12"):
        T.block_shuffle(x, 5)


# --------------------------------------------------------------------------- tiny real runs
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two tiny real sign-digit runs per init (16 px, 5 per class), in a private cache."""
    import os
    previous = os.environ.get("DIFFRED_CACHE")
    os.environ["DIFFRED_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    tr = T.image_set("sign_digits", "train", 5, 16)
    te = T.image_set("sign_digits", "test", 3, 16)
    arch = Arch("small_resnet", width=4, resolution=16)
    cfg = training.TrainConfig(epochs=2, lr=0.05, batch_size=16)
    a = training.train(arch, tr, te, cfg, seed=0, save_epochs=(0, 2), log=None)
    b = training.train(arch, tr, te, cfg, seed=1, log=None)
    yield arch, tr, te, a, b
    if previous is None:
        del os.environ["DIFFRED_CACHE"]
    else:
        os.environ["DIFFRED_CACHE"] = previous


def test_training_is_cached_and_deterministic(tiny):
    arch, tr, te, a, _ = tiny
    again = training.train(arch, tr, te, training.TrainConfig(epochs=2, lr=0.05, batch_size=16),
                           seed=0, save_epochs=(0, 2), log=None)
    assert again.key == a.key and again.accuracy == a.accuracy
    assert sorted(a.checkpoints) == [0, 2]
    assert all(torch.equal(a.checkpoints[0][k], a.init[k]) for k in a.init)
    # stored states are snapshots, not views of the trained parameters
    assert not torch.equal(a.init["stem.0.weight"], a.state["stem.0.weight"])
    # the final state reproduces the recorded final accuracy
    assert training.accuracy(a.model(), te, arch.inputs) == pytest.approx(a.accuracy, abs=1e-9)


def test_interpolation_endpoints_reproduce_accuracy_exactly(tiny):
    _, tr, te, a, b = tiny
    curve = B.interpolation_curve(a, b, tr, te, points=3)
    assert curve["accuracy"].iloc[0] == a.accuracy
    assert curve["accuracy"].iloc[-1] == b.accuracy
    # the endpoints are taken from the runs because re-estimating BN on their own training
    # set reproduces their stored state: check that premise by recomputing one
    model = a.model()
    training.recalibrate_bn(model, tr.x, a.arch.inputs)
    assert training.accuracy(model, te, a.arch.inputs) == a.accuracy
    # on another BN set the endpoints are recomputed like every other point
    other = B.interpolation_curve(a, b, T.subset(tr, 20, 1), te, points=3)
    model = a.model()
    training.recalibrate_bn(model, T.subset(tr, 20, 1).x, a.arch.inputs)
    assert other["accuracy"].iloc[0] == training.accuracy(model, te, a.arch.inputs)
    mid = B.interpolate_states(a.state, b.state, 0.5)
    k = "stem.0.weight"
    assert torch.allclose(mid[k], (a.state[k] + b.state[k]) / 2)
    assert B.barrier(curve) >= 0


def test_barrier_measures_drop_below_the_chord():
    import pandas as pd
    curve = pd.DataFrame({"lambda": [0, 0.5, 1], "accuracy": [0.8, 0.3, 0.6]})
    assert B.barrier(curve) == pytest.approx(0.7 - 0.3)
    assert B.barrier(curve.assign(accuracy=[0.8, 0.75, 0.6])) == 0.0


def test_bn_recalibration_changes_only_running_stats(tiny):
    _, tr, _, a, _ = tiny
    model = a.model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training.recalibrate_bn(model, T.block_shuffle(tr.x, 4), a.arch.inputs)  # other data
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "recalibration on new data must change the running statistics"
    assert all("running_" in k or "num_batches" in k for k in changed), changed
    assert not model.training


def test_bn_recalibration_weights_batches_by_size(tiny):
    """A short last batch counts by its size (PyTorch's momentum=None would give it the
    weight of a full batch): the first BN's running mean is the exact mean of its input."""
    _, tr, _, a, _ = tiny
    x = torch.cat([tr.x[:40], torch.full((3, *tr.x.shape[1:]), 255, dtype=torch.uint8)])
    model = a.model()
    training.recalibrate_bn(model, x, a.arch.inputs, batch_size=20)    # 20 + 20 + 3
    conv, bn = model.stem[0], model.stem[1]
    with torch.no_grad():
        pre = conv(training._model_input(x, a.arch.inputs, "cpu"))
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    equal_weights = torch.stack([pre[i:i + 20].mean((0, 2, 3)) for i in (0, 20, 40)]).mean(0)
    assert not torch.allclose(bn.running_mean, equal_weights, atol=1e-3)


def test_rewinding_moves_only_the_module(tiny):
    _, tr, te, a, _ = tiny
    stage = a.arch.stages["layer2"]
    same = B.rewound_state(a.state, a.init, stage, alpha=1.0)
    assert B.l2_distance(same, a.state, a.arch) == 0.0
    back = B.rewound_state(a.state, a.init, stage, alpha=0.0)
    assert torch.equal(back["layer2.0.conv1.weight"], a.init["layer2.0.conv1.weight"])
    assert torch.equal(back["layer1.0.conv1.weight"], a.state["layer1.0.conv1.weight"])
    noisy = B.perturb(same, stage, sigma=0.01, seed=0)
    delta = noisy["layer2.0.conv1.weight"] - same["layer2.0.conv1.weight"]
    assert 0.005 < float(delta.std()) < 0.02          # u ~ N(0, σ² I), absolute σ
    assert torch.equal(noisy["layer1.0.conv1.weight"], same["layer1.0.conv1.weight"])


def test_criticality_search_follows_the_definition():
    # error grows with σ and with the rewind 1 - α; feasible region: σ ≤ 0.3 α + 0.05 (≤ 0.1 at α=0)
    def error(alpha, sigma):
        return 0.0 if sigma <= 0.3 * alpha + 0.05 else 1.0
    found = B.criticality_search(error, [0, 0.5, 1], [0.01, 0.05, 0.1, 0.2], 0.5, 4.0)
    # α = 0 is feasible (σ = 0.05): the module can be rewound to its initial point, μ = 0
    assert found["alpha"] == 0 and found["criticality"] == 0 and found["sigma"] == 0.05
    # without a feasible α = 0, the minimum of α² d² / σ² over feasible points, largest σ each
    strict = lambda alpha, sigma: 0.0 if (alpha > 0 and sigma <= 0.3 * alpha) else 1.0
    found = B.criticality_search(strict, [0, 0.5, 1], [0.01, 0.05, 0.1, 0.2], 0.5, 4.0)
    assert found["alpha"] == 0.5 and found["sigma"] == 0.1      # 0.25·4/0.01 = 100 < 1·4/0.04
    assert found["criticality"] == pytest.approx(0.25 * 4.0 / 0.1 ** 2)
    # a σ that breaks the constraint is never used, even if a larger one would pass
    bumpy = lambda alpha, sigma: 1.0 if sigma == 0.05 else 0.0
    found = B.criticality_search(bumpy, [1.0], [0.01, 0.05, 0.1], 0.5, 1.0)
    assert found["sigma"] == 0.01
    nothing = B.criticality_search(lambda a, s: 1.0, [0, 1], [0.1], 0.5, 1.0)
    assert nothing["criticality"] == float("inf")
    with pytest.raises(ValueError, match="sigmas"):
        B.criticality_search(error, [0, 1], [0, 0.1], 0.5, 1.0)


def test_criticality_search_skips_only_points_that_cannot_win():
    """The pruned search returns the exhaustive grid minimum on monotone constraints, with
    fewer evaluations when a small α already wins."""
    rng = np.random.default_rng(0)
    alphas, sigmas = [0, 0.25, 0.5, 0.75, 1.0], [0.001, 0.003, 0.01, 0.03, 0.1]
    for _ in range(200):
        k, c = rng.uniform(0, 0.4), rng.uniform(-0.05, 0.05)
        def error(alpha, sigma):                  # feasible iff σ ≤ k α + c
            return 0.0 if sigma <= k * alpha + c else 1.0
        d2 = rng.uniform(0.1, 10)
        values = [a ** 2 * d2 / max(s for s in sigmas if error(a, s) <= 0.5) ** 2
                  for a in alphas if error(a, sigmas[0]) <= 0.5]
        found = B.criticality_search(error, alphas, sigmas, 0.5, d2)
        assert found["criticality"] == pytest.approx(min(values, default=float("inf")))
    # α = 0.25 feasible up to the largest σ: no larger α can win, none is evaluated
    found = B.criticality_search(lambda a, s: 0.0 if a > 0 else 1.0, alphas, sigmas, 0.5, 1.0)
    assert found["alpha"] == 0.25 and found["evaluations"] == 1 + len(sigmas)


def test_checkpoint_finding_needs_seeds_and_follows_the_interval():
    import pandas as pd
    def table(mid, seeds):
        rows = []
        for s in range(seeds):
            for e, acc in ((0, 0.60), (4, mid), (8, 0.80)):
                rows.append({"checkpoint_epoch": e, "seed": s, "accuracy": acc + 0.002 * s,
                             "accuracy_epoch1": acc - 0.2 + 0.003 * s})
        return pd.DataFrame(rows)
    assert F.checkpoint_finding(table(0.78, 3))[1] == "yes"     # 90% of the benefit at epoch 4
    assert F.checkpoint_finding(table(0.62, 3))[1] == "no"      # 10%
    assert F.checkpoint_finding(table(0.78, 1))[1] == "inconclusive"   # one seed: no interval
    noisy = table(0.70, 3)
    noisy.loc[noisy.checkpoint_epoch == 4, "accuracy"] += [0.05, -0.05, 0.0]
    assert F.checkpoint_finding(noisy)[1] in ("inconclusive", "no")
    # 70% of the benefit: over half, yet short of the rule's 80% (its first form, restored)
    assert F.checkpoint_finding(table(0.74, 3))[1] == "no"
    assert "3 seeds" in F.checkpoint_finding(table(0.78, 3))[0]


def test_module_criticality_on_a_real_run(tiny):
    _, tr, _, a, _ = tiny
    table = B.module_criticality(a, tr, alphas=(0.0, 1.0), sigmas=(0.001, 0.01))
    assert list(table.stage) == list(a.arch.stages)
    assert (table.criticality >= 0).all() and table.evaluations.ge(1).all()
    assert table.alpha.dropna().isin([0.0, 1.0]).all()


def test_learning_rate_choice_never_reads_the_test_split(tiny):
    arch, tr, te, _, _ = tiny
    cfg = training.TrainConfig(epochs=1, batch_size=8)
    init = training.RANDOM
    first = T.select_learning_rates(arch, {"sign_digits": tr}, init, [0.01, 0.1], cfg)
    # the rule reads validation accuracy only; poisoned test labels cannot reach it
    poisoned = T.ImageSet(te.name, te.x, (te.y + 1) % len(te.classes), te.classes,
                          te.fingerprint + "-poisoned")
    assert "test" not in T.select_learning_rates.__code__.co_varnames
    again = T.select_learning_rates(arch, {"sign_digits": tr}, init, [0.01, 0.1], cfg)
    assert T.choose_learning_rates(first) == T.choose_learning_rates(again)
    runs = T.finetune_grid(arch, {"sign_digits": (tr, poisoned)}, init,
                           T.choose_learning_rates(first), cfg, seeds=(0,))
    assert T.choose_learning_rates(first) == T.choose_learning_rates(again)
    assert len(runs) == 2
    fit, val = T.split_validation(tr, 0.2, 0)
    assert len(fit) + len(val) == len(tr) and set(val.y.tolist()) == set(tr.y.tolist())
    assert fit.fingerprint != val.fingerprint != tr.fingerprint


def test_choice_rule_takes_the_best_validation_rate_and_the_smaller_on_ties():
    import pandas as pd
    table = pd.DataFrame({"dataset": ["d"] * 4, "init": ["P-T", "P-T", "RI-T", "RI-T"],
                          "lr": [0.01, 0.1, 0.01, 0.1], "val_accuracy": [0.5, 0.7, 0.6, 0.6]})
    assert T.choose_learning_rates(table) == {("d", "P-T"): 0.1, ("d", "RI-T"): 0.01}


def test_cka_and_distances(tiny):
    _, _, te, a, b = tiny
    cka = B.pair_cka({"self": (a, a), "seeds": (a, b)}, te)
    assert np.allclose(cka[cka.pair == "self"].cka, 1.0)
    assert (cka[cka.pair == "seeds"].cka < 1.0).all()
    assert B.l2_distance(a.state, a.state, a.arch) == 0.0
    assert B.l2_distance(a.state, b.state, a.arch) > 0


def test_verdicts_follow_the_intervals():
    from diffred.core.verdicts import yes_if_above
    assert F.diff_ci([0.9, 0.91, 0.92], [0.5, 0.52, 0.51])[1] > 0
    assert yes_if_above(*F.diff_ci([0.9, 0.91, 0.92], [0.5, 0.52, 0.51])[1:]) == "yes"
    assert yes_if_above(*F.diff_ci([0.5, 0.52, 0.51], [0.9, 0.91, 0.92])[1:]) == "no"
    assert yes_if_above(*F.diff_ci([0.5, 0.9, 0.7], [0.6, 0.8, 0.7])[1:]) == "inconclusive"
    assert F.barrier_tolerance(0.5, 400) == pytest.approx(1.96 * 0.025)


# --------------------------------------------------------------------------- the rules
def _runs_table(seeds, gap=0.2, epoch1_gap=0.2, targets=("t",)):
    import pandas as pd
    return pd.DataFrame([{"dataset": t, "init": i, "seed": s, "n_test": 200,
                          "accuracy": 0.6 + (gap if i == "P-T" else 0) + 0.01 * s,
                          "accuracy_epoch1": 0.3 + (epoch1_gap if i == "P-T" else 0) + 0.01 * s}
                         for t in targets for s in seeds for i in ("P-T", "RI-T")])


def _basin(seeds, effect=True):
    """Synthetic basin tables: with ``effect`` P-T pairs are similar, close and barrier-free,
    RI-T pairs not, and higher stages are more critical."""
    import itertools

    import pandas as pd
    pairs = [f"{i}-{j}" for i, j in itertools.combinations(seeds, 2)]
    wobble = {p: 0.005 * k for k, p in enumerate(pairs)}
    cka = pd.DataFrame([{"pair": kind, "seeds": p, "stage": st,
                         "cka": (0.9 if kind == "P-T/P-T" or not effect else 0.3) + wobble[p]}
                        for kind in ("P-T/P-T", "RI-T/RI-T") for p in pairs for st in "ab"])
    dist = pd.DataFrame([{"pair": kind, "seeds": p, "dataset": "t",
                          "l2_distance": (1.0 if kind.startswith("P-T") or not effect else 5.0)
                          + wobble.get(p, 0)}
                         for kind in ("P-T/P-T", "RI-T/RI-T") for p in pairs] +
                        [{"pair": kind, "seeds": f"{s}-{s}", "dataset": "t",
                          "l2_distance": (1.0 if kind.startswith("P-T") or not effect else 5.0)
                          + 0.01 * s}
                         for kind in ("P-T/pretrained", "RI-T/its init") for s in seeds])
    interp = pd.DataFrame([{"pair": kind, "seeds": p, "bn": bn, "lambda": 0.5, "accuracy": 0.5,
                            "barrier": (0.001 if kind == "P-T/P-T" else 0.2 if effect
                                        else 0.001) + wobble[p] / 10}
                           for kind in ("P-T/P-T", "RI-T/RI-T") for p in pairs
                           for bn in ("re-estimated", "interpolated")])
    crit = pd.DataFrame([{"stage": st, "init": i, "seed": s, "grid_max": 1e4,
                          "criticality": (k * 10.0 if effect else 5.0) + s}
                         for i in ("P-T", "RI-T") for s in seeds
                         for k, st in enumerate(["s1", "s2", "s3", "s4"])])
    return {"cka": cka, "distances": dist, "interpolation": interp, "criticality": crit}


def _curves(seeds, last_drop=0.01):
    import pandas as pd
    return pd.DataFrame([{"dataset": "t", "init": i, "seed": s, "epoch": e,
                          "train_loss": 1.0 if e == 1 else 1.0 - last_drop}
                         for i in ("P-T", "RI-T") for s in seeds for e in (1, 2)])


def test_each_ch4_rule_is_inconclusive_from_one_run_or_pair_and_yes_on_a_clear_effect():
    import pandas as pd
    three, two, one = [0, 1, 2], [0, 1], [0]
    assert F.accuracy_finding(_runs_table(three))[1] == "yes"
    assert F.accuracy_finding(_runs_table(one))[1] == "inconclusive"
    assert F.accuracy_finding(_runs_table(three, gap=-0.2))[1] == "no"
    assert F.speed_finding(_runs_table(three))[1] == "yes"
    assert F.speed_finding(_runs_table(one))[1] == "inconclusive"

    def blocks(seeds):
        return pd.concat([_runs_table(seeds, gap=g, epoch1_gap=0.2).assign(block=b)
                          for b, g in ((32, 0.3), (1, 0.05))])
    assert F.block_finding(blocks(three))[1] == "yes"
    assert F.block_finding(blocks(one))[1] == "inconclusive"

    basin3, basin2 = _basin(three), _basin(two)     # two seeds: one pair of each type
    assert F.cka_finding(basin3)[1] == "yes" and F.cka_finding(basin2)[1] == "inconclusive"
    assert F.l2_finding(basin3)[1] == "yes" and F.l2_finding(basin2)[1] == "inconclusive"
    assert F.interpolation_finding(basin3, 0.05)[1] == "yes"
    assert F.interpolation_finding(basin2, 0.05)[1] == "inconclusive"   # one pair: no interval
    assert F.criticality_finding(basin3)[1] == "yes"
    assert F.criticality_finding(_basin(one))[1] == "inconclusive"      # one run per init
    flat = _basin(three, effect=False)
    assert F.cka_finding(flat)[1] != "yes" and F.interpolation_finding(flat, 0.05)[1] != "yes"
    # a barrier above the margin for P-T pairs: "no barrier" is refuted
    high = _basin(three)
    high["interpolation"].loc[high["interpolation"].pair == "P-T/P-T", "barrier"] += 0.3
    assert F.interpolation_finding(high, 0.05)[1] == "no"
    # both BN treatments must agree
    one_bn = _basin(three)
    interp = one_bn["interpolation"]
    interp.loc[(interp.bn == "interpolated") & (interp.pair == "P-T/P-T"), "barrier"] = 0.4
    assert F.interpolation_finding(one_bn, 0.05)[1] == "no"
    # the common-rate check joins the finding: a reversed ℓ2 at the common rate says "no"
    reversed_l2 = _basin(three)["distances"].assign(
        l2_distance=lambda d: np.where(d.pair.str.startswith("P-T"), 5.0, 1.0) + 0.01 * d.index)
    assert F.l2_finding(basin3, {"lr": 0.1, "distances": reversed_l2})[1] == "no"
    # infinite μ is censored at the grid's largest value, not dropped
    censored = _basin(three)
    censored["criticality"].loc[censored["criticality"].stage == "s4", "criticality"] = np.inf
    assert np.isfinite(F.criticality_scores(censored["criticality"]).score).all()
    assert F.criticality_finding(censored)[1] == "yes"


def test_the_convergence_gate_holds_back_basin_verdicts():
    seeds = [0, 1, 2]
    assert F.convergence_gate(_curves(seeds), "t")[0]
    passed, text = F.convergence_gate(_curves(seeds, last_drop=0.3), "t")
    assert not passed and "P-T seed 0 (30%)" in text
    one_epoch = _curves(seeds).query("epoch == 1")
    assert not F.convergence_gate(one_epoch, "t")[0]
    found = F.findings_from_tables(_runs_table(seeds), pd_blocks(seeds), _basin(seeds),
                                   _curves(seeds, last_drop=0.3))
    assert found["CKA"][1] == "inconclusive" and "not converged" in found["CKA"][0]
    assert found["P-T beats RI-T"][1] == "yes"          # not a basin finding: no gate
    converged = F.findings_from_tables(_runs_table(seeds), pd_blocks(seeds), _basin(seeds),
                                       _curves(seeds))
    assert {converged[k][1] for k in ("CKA", "l2 distance", "interpolation",
                                      "criticality")} == {"yes"}


def pd_blocks(seeds):
    import pandas as pd
    return pd.concat([_runs_table(seeds, gap=g).assign(block=b) for b, g in ((32, .3), (1, .1))])


def test_common_rate_takes_the_best_mean_of_both_inits():
    import pandas as pd
    table = pd.DataFrame({"dataset": ["d"] * 6, "init": ["P-T"] * 3 + ["RI-T"] * 3,
                          "lr": [0.01, 0.1, 0.4] * 2,
                          "val_accuracy": [0.9, 0.8, 0.5, 0.3, 0.6, 0.7]})
    assert T.common_rate(table, "d") == 0.1            # means 0.6, 0.7, 0.6
    with pytest.raises(ValueError, match="no selection runs for target 'x'; targets: \\['d'\\]"):
        T.common_rate(table, "x")


def test_bad_architecture_names_choices():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*small_resnet"):
        Arch("vgg")


def test_architecture_registry_builds_seeded_models_with_their_inputs():
    assert set(ARCHITECTURES) == {"small_resnet", "efficientnet_lite0"}
    arch = Arch("small_resnet", width=4, resolution=16)
    a, b = build_model(arch, 3, seed=0), build_model(arch, 3, seed=0)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.stem[0].weight, build_model(arch, 3, seed=1).stem[0].weight)
    assert a(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    assert arch.head == "fc" and list(arch.stages) == ["stem", "layer1", "layer2", "layer3"]
    modules = dict(a.named_modules())
    assert all(p in modules for prefixes in arch.stages.values() for p in prefixes)
    # the input config: the small ResNet reads mean = std = 0.5 at the arch's resolution
    assert arch.inputs == {"resolution": 16, "mean": (0.5,) * 3, "std": (0.5,) * 3,
                           "crop_pct": 1.0, "interpolation": "bilinear"}
    from diffred.core.models import MODELS
    lite = Arch("efficientnet_lite0", resolution=64)
    assert lite.inputs == {**MODELS["efficientnet_lite0"].inputs, "resolution": 64}
    assert lite.head == "classifier"


def test_training_inputs_read_the_config_and_keep_their_rounding():
    """Training normalises with the architecture's inputs (mean = std = 0.5) exactly as the old
    hard-coded x/127.5 - 1 did, bit for bit; the extraction form (x - 127.5) / 127.5 is the
    same map, correctly rounded, at most 2^-24 away."""
    from diffred.core.images import normalise
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    inputs = Arch().inputs
    train_form = normalise(x, inputs, "cpu", divide_first=True)
    assert torch.equal(train_form, x.float() / 127.5 - 1.0)
    extract_form = normalise(x, inputs, "cpu")
    assert torch.equal(extract_form, ((x.double() - 127.5) / 127.5).float())
    assert 0 < (train_form - extract_form).abs().max() <= 2 ** -24
    other = {**inputs, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    expected = (x.double() / 255 - torch.tensor(other["mean"]).view(1, 3, 1, 1).double()) / \
        torch.tensor(other["std"]).view(1, 3, 1, 1).double()
    assert torch.allclose(normalise(x.numpy(), other, "cpu").double(), expected, atol=1e-5)


def test_every_paper_finding_is_quoted_or_says_it_was_not_found():
    """A source quotes the paper (each quoted fragment is one of ``QUOTES``, with its source)
    or says plainly which part the reachable text does not state."""
    import re
    sentences = [quote for quote, _ in F.QUOTES.values()]
    assert all(quote and source for quote, source in F.QUOTES.values())
    for finding, (claim, source) in F.PAPER_FINDINGS.items():
        fragments = re.findall(r"'([^']+)'", source)
        assert fragments or F.NOT_FOUND in source, finding
        for fragment in fragments:
            assert fragment in sentences, (finding, fragment)
        assert "not read here" not in claim
