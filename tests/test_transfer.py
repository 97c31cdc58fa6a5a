"""Chapter 4 (transfer basin): block shuffle, training, interpolation, BN recalibration,
criticality, the trainable-architecture registry."""

import numpy as np
import pytest
import torch

from diffred import training
from diffred import transfer as T
from diffred.models import ARCHITECTURES, Arch, build_model

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
    curve = T.interpolation_curve(a, b, tr, te, points=3)
    assert curve["accuracy"].iloc[0] == a.accuracy
    assert curve["accuracy"].iloc[-1] == b.accuracy
    mid = T.interpolate_states(a.state, b.state, 0.5)
    k = "stem.0.weight"
    assert torch.allclose(mid[k], (a.state[k] + b.state[k]) / 2)
    assert T.barrier(curve) >= 0


def test_barrier_measures_drop_below_the_chord():
    import pandas as pd
    curve = pd.DataFrame({"lambda": [0, 0.5, 1], "accuracy": [0.8, 0.3, 0.6]})
    assert T.barrier(curve) == pytest.approx(0.7 - 0.3)
    assert T.barrier(curve.assign(accuracy=[0.8, 0.75, 0.6])) == 0.0


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


def test_criticality_zero_distance_at_final_weights(tiny):
    _, tr, te, a, _ = tiny
    stage = a.arch.stages["layer2"]
    same = T.rewound_state(a.state, a.init, stage, alpha=1.0)
    assert T.l2_distance(same, a.state, a.arch) == 0.0
    back = T.rewound_state(a.state, a.init, stage, alpha=0.0)
    assert torch.equal(back["layer2.0.conv1.weight"], a.init["layer2.0.conv1.weight"])
    assert torch.equal(back["layer1.0.conv1.weight"], a.state["layer1.0.conv1.weight"])
    table = T.module_criticality(a, tr, te, alphas=(1.0, 0.0), sigma=0.0)
    at_final = table[table.alpha == 1.0]
    assert (at_final.distance == 0).all()
    assert np.allclose(at_final.accuracy, a.accuracy)
    assert table.critical_alpha.between(0, 1).all()


def test_cka_and_distances(tiny):
    _, _, te, a, b = tiny
    cka = T.pair_cka({"self": (a, a), "seeds": (a, b)}, te)
    assert np.allclose(cka[cka.pair == "self"].cka, 1.0)
    assert (cka[cka.pair == "seeds"].cka < 1.0).all()
    d = T.distance_table({"same": (a.state, a.state), "seeds": (a.state, b.state)}, a.arch)
    assert d.l2_distance.iloc[0] == 0.0 and d.l2_distance.iloc[1] > 0


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
                           "crop_pct": 1.0}
    from diffred.models import MODELS
    lite = Arch("efficientnet_lite0", resolution=64)
    assert lite.inputs == {**MODELS["efficientnet_lite0"].inputs, "resolution": 64}
    assert lite.head == "classifier"


def test_training_inputs_read_the_config_and_keep_their_rounding():
    """Training normalises with the architecture's inputs (mean = std = 0.5) exactly as the old
    hard-coded x/127.5 - 1 did, bit for bit; the extraction form (x - 127.5) / 127.5 is the
    same map, correctly rounded, at most 2^-24 away."""
    from diffred.images import normalise
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
