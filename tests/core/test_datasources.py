"""Data of your own: an image folder (real images the test lays out), arrays in an .npz, and
the one-line errors that name what is wrong before anything is computed."""
from __future__ import annotations

import numpy as np
import pytest

from diffred.core import datasets as ds
from diffred.core.datasets import load_dataset
from diffred.core.errors import AssetNotFound
from diffred.core.params import dataset_names


@pytest.fixture(autouse=True)
def fresh_loader_cache():
    ds._load_split.cache_clear()
    yield
    ds._load_split.cache_clear()


def test_image_folder_gives_classes_labels_and_a_seeded_disjoint_split(tmp_path, image_folder):
    name = f"imagefolder:{image_folder(tmp_path / 'signs')}"
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert train.classes == ["0", "1", "2"] and train.kind == "image"
    assert np.bincount(train.labels).tolist() == [12] * 3
    assert np.bincount(test.labels).tolist() == [3] * 3
    assert not set(train.ids) & set(test.ids)
    assert load_dataset(name, "train").ids == train.ids            # seeded
    sub = load_dataset(name, "train", n_per_class=5, seed=1)
    assert np.bincount(sub.labels).tolist() == [5] * 3
    assert train.images(32).shape == (36, 3, 32, 32)                # they decode: real images


def test_changing_an_image_changes_the_fingerprint(tmp_path, image_folder):
    root = image_folder(tmp_path / "signs", per_class=5)
    name = f"imagefolder:{root}"
    before = load_dataset(name, "train").fingerprint
    victim = sorted((root / "1").glob("*"))[0]
    victim.write_bytes((root / "2" / sorted(p.name for p in (root / "2").glob("*"))[0]).read_bytes())
    ds._load_split.cache_clear()
    assert load_dataset(name, "train").fingerprint != before


def test_split_folders_are_used_as_they_are(tmp_path, image_folder):
    root = image_folder(tmp_path / "signs", classes=("3", "4"), per_class=4,
                        splits=["train", "val", "test"])
    name = f"imagefolder:{root}"
    assert ds.dataset_spec(name).splits == ("train", "dev", "test")
    assert [len(load_dataset(name, s)) for s in ("train", "dev", "test")] == [8, 8, 8]


def test_npz_arrays_load_like_keras_mnist(tmp_path):
    rng = np.random.default_rng(0)
    real = load_dataset("fashion_mnist", "test", n_per_class=3)      # real 28x28 images
    x = np.stack([np.asarray(i) for i in real.items]).astype(np.uint8)
    path = tmp_path / "fm.npz"
    np.savez(path, x_train=x, y_train=real.labels, x_test=x[:10], y_test=real.labels[:10],
             classes=np.array(real.classes))
    data = load_dataset(f"npz:{path}", "train")
    assert len(data) == 30 and data.classes == real.classes and data.kind == "image"
    assert np.array_equal(np.asarray(data.items[4]), x[4])
    np.savez(tmp_path / "bad.npz", x_train=rng.random((4, 8, 8)), y_train=np.arange(4))
    with pytest.raises(ValueError, match="x_train must be uint8"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}", "train")


@pytest.mark.parametrize("name,error,match", [
    ("imagefolder:/no/such/folder", AssetNotFound, "no folder /no/such/folder"),
    ("npz:/no/such.npz", AssetNotFound, "no file /no/such.npz"),
    ("folder:/x", ValueError, r"valid choices: .*imagefolder:<\.\.\.>")])
def test_bad_sources_get_one_line_naming_them(name, error, match):
    with pytest.raises(error, match=match):
        load_dataset(name, "train")


def test_parameter_rule_refuses_a_missing_folder_or_a_wrong_kind(tmp_path, image_folder):
    from diffred.core.params import Invalid
    image = dataset_names("image")
    root = image_folder(tmp_path / "signs", classes=("5",), per_class=3)
    assert image.check(f"imagefolder:{root}") == f"imagefolder:{root}"
    with pytest.raises(Invalid, match="no folder"):
        image.check(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(Invalid, match="valid choices"):
        dataset_names("tokens").check(f"imagefolder:{root}")


def test_hub_dataset_without_the_package_says_how_to_get_it():
    try:
        import datasets  # noqa: F401
        pytest.skip("the datasets package is installed: the hub path needs the network")
    except ImportError:
        pass
    with pytest.raises(AssetNotFound, match="pip install datasets"):
        load_dataset("hf:cifar10", "train")
