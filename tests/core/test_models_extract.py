"""Real weights, real data: the extraction pipeline and its cache."""
import numpy as np
import pytest

import diffred.core.extract as ex
from diffred import features, load_dataset, load_model
from diffred.core.cache import hash_key


@pytest.mark.slow
def test_efficientnet_lite0_is_real_imagenet_weights():
    """>= 80% top-1 on the 1,000-image ImageNet sample (one image per class)."""
    import torch
    f = features("efficientnet_lite0", "imagenet_sample", "test", progress=False)
    head = load_model("efficientnet_lite0").module.get_classifier()
    with torch.no_grad():
        logits = head(torch.tensor(np.asarray(f.X)))
    top1 = float((logits.argmax(1).numpy() == f.y).mean())
    print(f"efficientnet_lite0 top-1 on imagenet_sample: {top1:.3f}")
    assert f.X.shape == (1000, 1280)
    assert top1 >= 0.80


def test_minilm_has_seven_hidden_states_of_width_384():
    out = features("minilm_l6", "sst2", "test", layer="all", n=16, progress=False)
    assert sorted(out) == list(range(7))
    assert all(f.X.shape == (16, 384) for f in out.values())
    assert not np.allclose(out[0].X, out[6].X)
    cls = features("minilm_l6", "sst2", "test", layer=6, n=16, pooling="cls", progress=False)
    assert not np.allclose(cls.X, out[6].X)  # cls and mean pooling are different entries


def test_token_features_align_with_words():
    data = load_dataset("conll2003_ner", "dev", n=100)
    f = features("minilm_l6", data, layer=3, progress=False)
    assert f.X.shape == (len(data.labels), 384) and np.array_equal(f.y, data.labels)


def test_last_subtoken_index():
    #            [CLS] un  ##believ ##able  day  [SEP]
    word_ids = [None, 0, 0, 0, 1, None]
    assert ex.last_subtoken_index(word_ids, 2).tolist() == [3, 4]
    # a word lost to truncation reuses the previous word's position
    assert ex.last_subtoken_index([None, 0, 1, None], 3).tolist() == [1, 2, 2]


def test_stages_and_views():
    data = load_dataset("sign_digits", "test", n=6)
    out = features("efficientnet_lite0", data, layer=["penultimate", "blocks.2"], resolution=64,
                   progress=False)
    assert out["penultimate"].X.shape == (6, 1280) and out["blocks.2"].X.shape[0] == 6
    v = features("efficientnet_lite0", data, resolution=64, views=3, progress=False)
    assert v.X.shape == (6, 3, 1280)
    assert not np.allclose(v.X[:, 0], v.X[:, 1])          # different augmented views
    again = features("efficientnet_lite0", data, resolution=64, views=3, progress=False)
    assert np.array_equal(v.X, again.X)                    # seeded: same views again


def test_bad_layer_and_pooling_are_named():
    data = load_dataset("sign_digits", "test", n=2)
    with pytest.raises(ValueError, match="unknown layer 'blocks.99'.*valid choices: penultimate"):
        features("efficientnet_lite0", data, layer="blocks.99", resolution=64, progress=False)
    with pytest.raises(ValueError, match="valid choices: cls, mean"):
        features("minilm_l6", "sst2", "test", n=2, layer=1, pooling="max", progress=False)
    with pytest.raises(ValueError, match="cannot read"):
        features("minilm_l6", data, progress=False)


@pytest.fixture
def count_extractions(monkeypatch, tmp_path):
    from diffred.core.cache import ArrayStore
    monkeypatch.setattr(ex, "STORE", ArrayStore("features", root=tmp_path))
    calls = []
    real = ex._extract_vision
    monkeypatch.setattr(ex, "_extract_vision", lambda *a, **k: (calls.append(1), real(*a, **k)))
    return calls


def test_cache_hit_then_truncated_file_is_recomputed(count_extractions):
    data = load_dataset("sign_digits", "test", n=4)
    first = features("efficientnet_lite0", data, resolution=64, progress=False)
    expected = np.array(first.X)
    features("efficientnet_lite0", data, resolution=64, progress=False)
    assert len(count_extractions) == 1                     # second call: cache hit
    x_file = ex.STORE.path(first.meta["key"]) / "X.npy"
    x_file.write_bytes(x_file.read_bytes()[:-100])         # simulate a crash mid-copy
    again = features("efficientnet_lite0", data, resolution=64, progress=False)
    assert len(count_extractions) == 2
    assert np.allclose(again.X, expected)
    assert not list(ex.STORE.root.rglob(".*.tmp*"))        # nothing half-written left


def test_changed_weights_change_the_key(count_extractions, monkeypatch):
    data = load_dataset("sign_digits", "test", n=4)
    a = features("efficientnet_lite0", data, resolution=64, progress=False)
    monkeypatch.setattr(ex, "model_fingerprint", lambda name: "other-weights")
    b = features("efficientnet_lite0", data, resolution=64, progress=False)
    assert len(count_extractions) == 2 and a.meta["key"] != b.meta["key"]
    assert b.meta["weights"] == "other-weights"


def test_preprocessing_reads_the_model_inputs_only():
    """The registry's ``inputs`` (no weights loaded) and a loaded backbone's agree, and are
    what the cache key records; ImageNet images get the model's centre crop."""
    from diffred.core.models import MODELS
    data = load_dataset("sign_digits", "test", n=2)
    inet = load_dataset("imagenet_sample", "test", n=2)
    inputs = MODELS["efficientnet_lite0"].inputs
    assert inputs == {"resolution": 224, "mean": (0.5,) * 3, "std": (0.5,) * 3,
                      "crop_pct": 0.875, "interpolation": "bicubic"}
    assert load_model("efficientnet_lite0").inputs == inputs
    for backbone in (None, load_model("efficientnet_lite0")):
        assert ex._vision_preprocess("efficientnet_lite0", data, None, backbone) == {
            "resolution": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0,
            "interpolation": "bicubic"}
        assert ex._vision_preprocess("efficientnet_lite0", inet, 96, backbone)["crop_pct"] == 0.875


@pytest.mark.parametrize("k", [0, 1, 2])
def test_lite_preprocessing_is_timms_pretrained_config(k):
    """One source of truth: every Lite model's inputs are timm's pretrained config for its
    tf_efficientnet_lite architecture (lite1: 240 px, crop 0.882, bicubic), not a copy."""
    import timm

    from diffred.core.models import MODELS
    cfg = timm.get_pretrained_cfg(f"tf_efficientnet_lite{k}").to_dict()
    inputs = MODELS[f"efficientnet_lite{k}"].inputs
    assert (inputs["resolution"], inputs["crop_pct"], inputs["interpolation"]) == (
        cfg["input_size"][-1], cfg["crop_pct"], cfg["interpolation"])
    assert (inputs["mean"], inputs["std"]) == (tuple(cfg["mean"]), tuple(cfg["std"]))
    if k == 1:
        assert (inputs["crop_pct"], inputs["interpolation"]) == (0.882, "bicubic")


def test_images_are_resampled_with_the_configured_filter():
    """The resize follows ``interpolation`` (bicubic differs from bilinear on a real image);
    an unknown filter is refused by name, with the valid choices."""
    from PIL import Image

    from diffred.core.images import decode_image, preprocess_image
    item = load_dataset("sign_digits", "test", n=1).items[0]
    bicubic = preprocess_image(item, 40, interpolation="bicubic")
    expected = np.asarray(decode_image(item).resize((40, 40), Image.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(bicubic, expected)
    assert not np.array_equal(bicubic, preprocess_image(item, 40, interpolation="bilinear"))
    with pytest.raises(ValueError, match="'hamming'.*bicubic"):
        preprocess_image(item, 40, interpolation="hamming")


def test_hub_models_take_their_inputs_from_timm(monkeypatch):
    """timm:<arch> inputs come from timm's pretrained config (weights stubbed: offline)."""
    import timm

    from diffred.core import models
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model",
                        lambda arch, pretrained: create(arch, pretrained=False))
    backbone = models._build_timm("resnet18")
    cfg = timm.data.resolve_data_config({}, model=backbone.module)
    assert backbone.inputs == {"resolution": cfg["input_size"][-1], "mean": tuple(cfg["mean"]),
                               "std": tuple(cfg["std"]), "crop_pct": cfg["crop_pct"],
                               "interpolation": cfg["interpolation"]}
    assert backbone.inputs["mean"] != (0.5,) * 3          # ImageNet statistics, not a default


def test_cache_key_is_content_addressed():
    assert hash_key({"a": 1, "b": [1, 2]}) == hash_key({"b": [1, 2], "a": 1})
    assert hash_key({"a": 1}) != hash_key({"a": 2})
