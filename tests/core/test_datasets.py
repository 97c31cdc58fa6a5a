import numpy as np
import pytest

import diffred.core.datasets as ds
from diffred import load_dataset
from diffred.core.errors import AssetNotFound


@pytest.mark.parametrize("name,split,n_classes,min_len", [
    ("cifar10", "test", 10, 10000), ("sign_digits", "train", 10, 1500), ("elpv", "test", 4, 600),
    ("imagenet_sample", "test", 1000, 1000), ("fashion_mnist", "test", 10, 10000),
    ("sst2", "test", 2, 872), ("mrpc", "dev", 2, 300), ("cola", "test", 2, 527),
    ("rte", "train", 2, 1000), ("trec", "test", 6, 500)])
def test_real_datasets_load(name, split, n_classes, min_len):
    data = load_dataset(name, split)
    assert len(data) >= min_len and len(data.labels) == len(data)
    assert len(data.classes) == n_classes and set(np.unique(data.labels)) <= set(range(n_classes))


def test_stratified_subset_is_seeded_and_balanced():
    a = load_dataset("cifar10", "train", n_per_class=7, seed=1)
    b = load_dataset("cifar10", "train", n_per_class=7, seed=1)
    c = load_dataset("cifar10", "train", n_per_class=7, seed=2)
    assert np.bincount(a.labels).tolist() == [7] * 10
    assert a.ids == b.ids and a.fingerprint == b.fingerprint
    assert a.ids != c.ids and a.fingerprint != c.fingerprint


def test_unsplit_dataset_gets_disjoint_seeded_split():
    train, test = load_dataset("sign_digits", "train"), load_dataset("sign_digits", "test")
    assert not set(train.ids) & set(test.ids)
    assert len(train) + len(test) == 2062
    assert abs(len(test) / 2062 - 0.2) < 0.01


def test_token_task_takes_first_words_with_one_tag_per_word():
    data = load_dataset("conll2003_ner", "train", n=500)
    n_words = sum(len(s) for s in data.items)
    assert 500 <= n_words < 500 + 130 and len(data.labels) == n_words
    assert data.items[0][:2] == ["EU", "rejects"]
    assert data.classes[data.labels[0]] == "B-ORG"
    pos = load_dataset("ud_pos", "dev", n=50)
    assert [pos.classes[t] for t in pos.labels[:3]] == ["ADP", "DET", "PROPN"]


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "data_dirs", lambda: [tmp_path])
    ds._load_split.cache_clear()
    with pytest.raises(AssetNotFound, match=str(tmp_path)):
        load_dataset("sign_digits", "train")
    ds._load_split.cache_clear()


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "cifar100"}, "valid choices: cifar10"),
    ({"name": "cifar10", "split": "dev"}, "valid choices: train, test"),
    ({"name": "cifar10", "n_per_class": 0}, "n_per_class"),
    ({"name": "ud_pos", "n_per_class": 3}, "token task")])
def test_bad_arguments_name_the_valid_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


def test_token_tag_inventory_is_the_same_for_every_split():
    """CoNLL-2000's test file has a tag (I-LST) that its train file lacks."""
    splits = [load_dataset("conll2000_chunk", s, n=10) for s in ("train", "dev", "test")]
    assert splits[0].classes == splits[1].classes == splits[2].classes
    assert "I-LST" in splits[0].classes


def test_images_come_from_the_one_image_path():
    """Data.images is images.preprocess_image (whole-image bilinear resize) on every item."""
    from diffred.core.images import decode_image, preprocess_image
    data = load_dataset("sign_digits", "test", n=5)
    x = data.images(24)
    assert x.shape == (5, 3, 24, 24) and x.dtype == np.uint8
    assert all(np.array_equal(x[i], preprocess_image(item, 24))
               for i, item in enumerate(data.items))
    ref = np.asarray(decode_image(data.items[0]).resize((24, 24), resample=2)).transpose(2, 0, 1)
    assert np.array_equal(x[0], ref)
    grey = load_dataset("elpv", "test", n=2)                   # grey PNGs -> RGB
    assert grey.images(8).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="'sst2' holds text items, not images"):
        load_dataset("sst2", "test", n=2).images(8)
