"""Precision policy: faithful fast paths, exact fp32, clean fallback without bf16 (real weights)."""
import numpy as np
import pandas as pd
import pytest
import torch

import diffred.core.extract as ex
import diffred.core.precision as pr
from diffred import features, load_dataset, load_model, probe_accuracy
from diffred.core.cache import ArrayStore, hash_key
from diffred.core.images import image_batches, normalise


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """An empty feature cache, so every call computes (same code path as the real one)."""
    monkeypatch.setattr(ex, "STORE", ArrayStore("features", root=tmp_path))


def test_bad_precision_is_a_one_line_error_before_any_work():
    with pytest.raises(ValueError, match="precision 'fp64'.*auto, fp32, bf16"):
        features("efficientnet_lite0", "cifar10", "test", n=8, precision="fp64")


def test_folding_is_exact_and_leaves_the_shared_model_alone():
    model = load_model("efficientnet_lite0").module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = load_dataset("cifar10", "test", n=16, seed=3)
    prep = {"resolution": 160, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0}
    x = normalise(next(image_batches(data.items, prep, 16)), prep, "cpu")
    run = pr.prepare_vision(model, "fp32-fused")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in run.module.modules())
    with torch.inference_mode():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        with run.context():
            out = run.module.forward_head(run.module.forward_features(run.input(x)),
                                          pre_logits=True)
    assert float((out - ref).norm() / ref.norm()) < 1e-5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_conv_output_read_past_its_bn_is_not_folded():
    import torch.nn as nn

    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            for bn in (self.bn, self.bn2):
                bn.running_mean.fill_(0.5)
                bn.running_var.fill_(4.0)

        def forward(self, x):
            y = self.conv(x)
            return self.bn2(self.conv2(self.bn(y) + y))

    model = Reuse().eval()
    assert pr.conv_bn_pairs(model) == [("conv2", "bn2")]
    folded = pr.fold_batchnorms(model)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.Identity)
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), rtol=1e-5, atol=1e-6)


def test_fp32_is_todays_features_and_key(fresh_store):
    """precision='fp32': bit-identical to the plain eager forward, key without a precision."""
    data = load_dataset("cifar10", "test", n=40, seed=2)
    f = features("efficientnet_lite0", data, resolution=96, batch_size=16, precision="fp32",
                 progress=False)
    spec = {k: v for k, v in f.meta.items() if k != "key"}
    assert "precision" not in spec and f.meta["key"] == hash_key(spec)
    model = load_model("efficientnet_lite0").module
    with torch.inference_mode():
        ref = np.concatenate([model.forward_head(model.forward_features(
            normalise(b, spec["preprocess"], "cpu")), pre_logits=True).numpy()
            for b in image_batches(data.items, spec["preprocess"], 16)])
    assert f.X.dtype == np.float32 and np.array_equal(np.asarray(f.X), ref)
    fast = features("efficientnet_lite0", data, resolution=96, batch_size=16, progress=False)
    assert fast.meta["precision"] == pr.resolve("auto", "cpu", "efficientnet_lite0")
    assert fast.meta["key"] != f.meta["key"] and fast.X.dtype == np.float32


def test_without_bf16_auto_means_fp32(monkeypatch, fresh_store):
    monkeypatch.setattr(pr, "bf16_supported", lambda: False)
    assert pr.resolve("auto", "cpu", "minilm_l6", "text") == "fp32"
    assert pr.resolve("auto", "cpu", "efficientnet_lite0") == "fp32-fused"   # float32 too
    with pytest.raises(ValueError, match="precision 'bf16' needs a CPU with native bf16"):
        pr.resolve("bf16", "cpu", "minilm_l6", "text")
    auto = features("minilm_l6", "sst2", "test", layer=2, n=16, progress=False)
    fp32 = features("minilm_l6", "sst2", "test", layer=2, n=16, precision="fp32",
                    progress=False)
    assert auto.meta["key"] == fp32.meta["key"] and "precision" not in auto.meta
    monkeypatch.setattr(pr, "bf16_supported", lambda: True)
    monkeypatch.setattr(pr, "verified", lambda check: True)
    assert pr.resolve("auto", "cpu", "minilm_l6", "text") == "bf16"
    assert pr.resolve("auto", "cpu", "efficientnet_lite0") == "fp32-fused"   # not faithful
    assert pr.resolve("auto", "cuda", "minilm_l6", "text") == "cuda-fp16"


def test_training_paths_fall_back_without_bf16(monkeypatch):
    import torch.nn as nn
    monkeypatch.setattr(pr, "bf16_supported", lambda: False)
    monkeypatch.setattr(pr, "verified", lambda check: True)
    assert pr.training_path("cpu", "auto", "small_resnet") == "channels-last"
    assert pr.training_path("cpu", "fp32", "small_resnet") == "fp32"
    with pytest.raises(ValueError, match="precision 'bf16' needs a CPU"):
        pr.training_path("cpu", "bf16")
    monkeypatch.setattr(pr, "bf16_supported", lambda: True)
    assert pr.training_path("cpu", "auto", "small_resnet") == "bf16"
    assert pr.training_path("cpu", "auto", "efficientnet_lite0") == "channels-last"
    assert pr.training_path("cuda", "auto", "small_resnet") == "fp32"
    conv = pr.prepare_model(nn.Conv2d(3, 4, 3), "bf16")
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.dtype == torch.float32          # weights and SGD stay float32
    with pr.training_context("bf16"):
        y = conv(pr.prepare_input(torch.randn(2, 3, 8, 8), "bf16"))
    assert y.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="training path 'fp16'"):
        pr.training_context("fp16")


@pytest.mark.skipif(not pr.bf16_supported(), reason="CPU without native bf16")
def test_text_bf16_hidden_states_are_faithful(fresh_store):
    """The text models in FAITHFUL_BF16: <= 1% relative error at every layer."""
    for model in sorted(pr.FAITHFUL_BF16):
        kw = dict(layer="all", n=48, seed=1, progress=False)
        fast = features(model, "sst2", "train", **kw)
        exact = features(model, "sst2", "train", precision="fp32", **kw)
        for lay in exact:
            a, b = np.asarray(exact[lay].X, np.float64), np.asarray(fast[lay].X, np.float64)
            assert fast[lay].meta["precision"] == "bf16"
            assert np.linalg.norm(a - b) <= 0.01 * np.linalg.norm(a), (model, lay)


@pytest.mark.slow
def test_auto_features_keep_probe_accuracy():
    """CIFAR-10 at 160 px, 100 train / 50 test per class: probe accuracy of the "auto"
    features within 0.3 points of fp32's, for the whole layer and for 20% column subsets."""
    kw = dict(resolution=160, progress=False)
    exact = [features("efficientnet_lite0", "cifar10", s, n_per_class=n, precision="fp32", **kw)
             for s, n in (("train", 100), ("test", 50))]
    auto = [features("efficientnet_lite0", "cifar10", s, n_per_class=n, **kw)
            for s, n in (("train", 100), ("test", 50))]
    rng = np.random.default_rng(0)
    D = exact[0].X.shape[1]
    columns = [np.arange(D)] + [np.sort(rng.choice(D, D // 5, replace=False)) for _ in range(8)]

    def acc(tr, te):
        return probe_accuracy(np.asarray(tr.X), tr.y, np.asarray(te.X), te.y,
                              columns=columns).accuracy

    diff = 100 * np.abs(acc(*auto) - acc(*exact))
    print(f"{auto[0].meta.get('precision', 'fp32')}: probe accuracy |diff| full "
          f"{diff[0]:.2f} pt, 20% subsets max {diff[1:].max():.2f} pt")
    assert diff.max() <= 0.3


# --------------------------------------------------------------------------- the setting
@pytest.fixture
def setting():
    """Restore the process setting after the test."""
    before = pr.setting()
    yield pr
    pr.use(before)


def test_the_chapter_parameter_is_the_setting_of_every_default(setting, monkeypatch):
    from diffred.book.chapter import Chapter, ParameterError, chapter_defaults, resolve_chapter
    from diffred.core import probe
    path = resolve_chapter("01")
    Chapter("01", {**chapter_defaults(path), "precision": "fp32"}, {})
    assert pr.setting() == "fp32" and pr.result_tag() == {}
    monkeypatch.setattr(pr, "bf16_supported", lambda: True)
    monkeypatch.setattr(pr, "verified", lambda check: True)
    assert pr.resolve(None, "cpu", "minilm_l6", "text") == "fp32"
    assert probe._precision(None, "cpu", 1280) == "fp32"
    assert pr.training_path("cpu", None, "small_resnet") == "fp32"
    pr.use("auto")
    assert pr.resolve(None, "cpu", "minilm_l6", "text") == "bf16"
    assert probe._precision(None, "cpu", 1280) == "bf16"
    assert pr.result_tag() == {"precision": "auto"}         # cached results keyed apart
    monkeypatch.setattr(pr, "bf16_supported", lambda: False)
    assert pr.result_tag() == {}                            # float32 here: today's keys
    with pytest.raises(ParameterError, match="precision.*'fp16'.*auto, fp32, bf16"):
        Chapter("01", {**chapter_defaults(path), "precision": "fp16"}, {})
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        pr.use("half")


def test_forced_fp32_gives_the_same_tables(setting, tmp_path, monkeypatch):
    """Chapter 1's sweep table (vision: BN-folded channels-last features; text: bf16 features
    and probes where the CPU has bf16) under "auto" and forced "fp32": the same rows, test
    accuracy within 2 test examples each and 1 on average."""
    from diffred.studies.diffuse import method as diffuse
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    monkeypatch.setattr(ex, "STORE", ArrayStore("features", root=tmp_path / "features"))
    tables = {}
    for precision in ("auto", "fp32"):
        pr.use(precision)
        tables[precision] = pd.concat([diffuse.run_sweeps(
            [model], [dataset], fractions=[0.1, 0.5, 1.0], seeds=range(2), max_iter=100,
            train_subset=train, test_subset=test, resolution=64).runs
            for model, dataset, train, test in (
                ("efficientnet_lite0", "cifar10", {"n_per_class": 20}, {"n_per_class": 10}),
                ("minilm_l6", "trec", {"n": 300}, {"n": 100}))], ignore_index=True)
    auto, fp32 = tables["auto"], tables["fp32"]
    keys = ["model", "dataset", "method", "fraction", "seed"]
    assert auto[keys].equals(fp32[keys])
    step = 1 / auto["n_test"]                                # one test example
    diff = (auto["accuracy"] - fp32["accuracy"]).abs() / step
    print(f"auto vs fp32: |accuracy diff| mean {diff.mean():.2f} max {diff.max():.0f} examples")
    assert diff.max() <= 2 and diff.mean() <= 1
    assert (fp32.groupby("model")["full_accuracy"].min() > 0.4).all()     # real probes


def test_training_paths_are_keyed_apart_and_train_alike(setting, tmp_path, monkeypatch):
    """ch4's training: "fp32" keeps today's key (no precision entry); the "auto" path is in
    the key, and its first-epoch loss is within 2% of fp32's (same seed, same batches)."""
    from diffred.core import training
    from diffred.core.models import Arch
    from diffred.studies.transfer import method as T
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path))
    tr, te = T.image_set("sign_digits", "train", 20, 16), T.image_set("sign_digits", "test", 5, 16)
    arch = Arch("small_resnet", width=8, resolution=16)
    cfg = training.TrainConfig(epochs=2, lr=0.05, batch_size=16)
    runs = {p: training.train(arch, tr, te, cfg, seed=0, precision=p, log=None)
            for p in ("fp32", "auto")}
    path = pr.training_path("cpu", "auto", "small_resnet")
    assert "precision" not in runs["fp32"].meta["spec"] and runs["fp32"].meta["precision"] == "fp32"
    assert runs["auto"].meta["spec"]["precision"] == path != "fp32"
    assert runs["auto"].key != runs["fp32"].key
    loss = {p: float(r.curve.train_loss[0]) for p, r in runs.items()}
    print(f"{path}: first-epoch loss {loss['auto']:.4f} vs fp32 {loss['fp32']:.4f}")
    assert abs(loss["auto"] - loss["fp32"]) <= 0.02 * loss["fp32"]
