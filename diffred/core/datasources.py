"""Data of your own, by path or hub name, beside the book's registry:

* ``imagefolder:<folder>`` — images in one sub-folder per class (``<folder>/<class>/*.jpg``),
  optionally under split folders (``train/``, ``dev/`` or ``val/``, ``test/``); a folder without
  split folders is split 80/20 into train/test, seeded and stratified (:func:`seeded_split`).
* ``npz:<file>`` — uint8 image arrays ``x_train`` (N, H, W) or (N, H, W, 3) with integer labels
  ``y_train``, and ``x_test``/``y_test`` (``x_dev``/``y_dev`` optional; an optional string
  array ``classes`` names the labels): the layout of Keras's ``mnist.npz``.
* ``hf:<dataset>[:<config>]`` — a Hugging Face ``datasets`` dataset (online; ``pip install
  datasets``): its first ``Image`` column (else its text column) and first ``ClassLabel``.

Each loader returns ``(items, labels, classes, ids)`` like a registry loader; an item's id
carries its content hash, so a changed file changes the data's fingerprint and every cache key
that depends on it.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from diffred.core.errors import AssetNotFound, check_choice

PREFIXES = ("imagefolder:", "npz:", "hf:")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = {"train": ("train",), "dev": ("dev", "val", "valid", "validation"),
                 "test": ("test",)}


def seeded_split(labels: np.ndarray, split: str, frac_held: float, held_name: str,
                 rest_name: str, seed: int = 0) -> np.ndarray:
    """Indices of a seeded stratified split of an unsplit dataset: ``frac_held`` of each
    class goes to ``held_name``, the rest to ``rest_name``."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held[idx[: int(round(frac_held * len(idx)))]] = True
    return np.flatnonzero(held if split == held_name else ~held)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


# --------------------------------------------------------------------------- image folders
def _folder(name: str) -> Path:
    root = Path(name.removeprefix("imagefolder:")).expanduser()
    if not root.is_dir():
        raise AssetNotFound(f"dataset {name!r}: no folder {root}")
    return root


def folder_splits(name: str) -> dict[str, Path]:
    """``split -> folder`` of an image folder (its own split folders, else train/test of the
    whole folder)."""
    root = _folder(name)
    found = {split: root / sub for split, subs in SPLIT_FOLDERS.items()
             for sub in subs[::-1] if (root / sub).is_dir()}
    return found or {"train": root, "test": root}


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def load_imagefolder(name: str, split: str):
    splits = folder_splits(name)
    check_choice(f"split of {name}", split, splits)
    classes = sorted({c for folder in set(splits.values()) for c in _class_dirs(folder)})
    if not classes:
        raise AssetNotFound(f"dataset {name!r}: no class folders in {splits[split]} "
                            "(expected <folder>/<class>/<image files>)")
    items, labels, ids = [], [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (splits[split] / cls).glob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES) if (splits[split] / cls).is_dir() else []
        for p in files:
            data = p.read_bytes()
            items.append(data)
            labels.append(label)
            ids.append(f"{cls}/{p.name}#{_digest(data)}")
    if not items:
        raise AssetNotFound(f"dataset {name!r}: no images ({', '.join(IMAGE_SUFFIXES)}) under "
                            f"{splits[split]}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(set(splits.values())) == 1:        # one unsplit folder: a seeded 80/20 split
        keep = seeded_split(labels, split, 0.2, "test", "train")
        items, labels, ids = [items[i] for i in keep], labels[keep], [ids[i] for i in keep]
    return items, labels, classes, ids


# --------------------------------------------------------------------------- arrays
def _npz_path(name: str) -> Path:
    path = Path(name.removeprefix("npz:")).expanduser()
    if not path.is_file():
        raise AssetNotFound(f"dataset {name!r}: no file {path}")
    return path


def _splits(name: str, files) -> tuple[str, ...]:
    splits = tuple(s for s in ("train", "dev", "test") if f"x_{s}" in files and f"y_{s}" in files)
    if "train" not in splits:
        raise ValueError(f"dataset {name!r}: needs arrays x_train and y_train (found "
                         f"{', '.join(sorted(files)) or 'none'})")
    return splits


def npz_splits(name: str) -> tuple[str, ...]:
    """The splits an .npz file holds (its array names only: nothing is loaded)."""
    with np.load(_npz_path(name), allow_pickle=False) as z:
        return _splits(name, z.files)


def load_npz(name: str, split: str):
    data = _npz_path(name).read_bytes()              # read once: the arrays and their hash
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        splits = _splits(name, z.files)
        check_choice(f"split of {name}", split, splits)
        arrays = {k: z[k] for k in z.files}
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise ValueError(f"dataset {name!r}: x_{split} must be uint8 of shape (N, H, W) or "
                         f"(N, H, W, 3), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"dataset {name!r}: y_{split} must hold {len(x)} labels >= 0, got "
                         f"{y.dtype} {y.shape}")
    n_classes = int(max(arrays[f"y_{s}"].max() for s in splits)) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else \
        [str(c) for c in range(n_classes)]
    tag = _digest(data)
    return list(x), y.astype(np.int64), classes, [f"{tag}:{split}:{i}" for i in range(len(x))]


# --------------------------------------------------------------------------- Hugging Face hub
HF_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _hf_builder(name: str):
    try:
        import datasets
    except ImportError:
        raise AssetNotFound(f"dataset {name!r} needs the Hugging Face datasets package "
                            "(pip install datasets) and the network") from None
    repo, _, config = name.removeprefix("hf:").partition(":")
    try:
        return datasets, datasets.load_dataset_builder(repo, config or None)
    except Exception as err:
        raise AssetNotFound(f"dataset {name!r}: could not reach it on the hub "
                            f"({type(err).__name__}: {err})") from None


def _hf_columns(name: str, features) -> tuple[str, str, str]:
    """(kind, input column, label column) of a hub dataset's features."""
    import datasets
    labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    texts = [c for c, f in features.items()
             if isinstance(f, datasets.Value) and f.dtype == "string"]
    if not labels or not (images or texts):
        raise ValueError(f"dataset {name!r}: needs a ClassLabel column and an Image or text "
                         f"column; its columns: {', '.join(features)}")
    return ("image", images[0], labels[0]) if images else ("text", texts[0], labels[0])


def hf_kind_and_splits(name: str) -> tuple[str, tuple[str, ...]]:
    _, builder = _hf_builder(name)
    kind, _, _ = _hf_columns(name, builder.info.features)
    have = set(builder.info.splits or ())
    return kind, tuple(s for s, hub in HF_SPLITS.items() if hub in have)


def load_hf(name: str, split: str):
    datasets, builder = _hf_builder(name)
    kind, column, label = _hf_columns(name, builder.info.features)
    repo, _, config = name.removeprefix("hf:").partition(":")
    table = datasets.load_dataset(repo, config or None, split=HF_SPLITS[split])
    if kind == "image":
        table = table.cast_column(column, datasets.Image(decode=False))
        items = [row["bytes"] or Path(row["path"]).read_bytes() for row in table[column]]
    else:
        items = list(table[column])
    fingerprint = getattr(table, "_fingerprint", "") or builder.info.version
    ids = [f"{fingerprint}:{split}:{i}" for i in range(len(items))]
    return items, np.asarray(table[label], dtype=np.int64), \
        list(builder.info.features[label].names), ids
