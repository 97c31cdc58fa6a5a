"""Datasets by short name, from a local mirror, installed packages, or the canonical source.

A loaded split is a :class:`Data`: a list of ``items`` (encoded images, uint8 arrays,
sentences, sentence pairs or word lists), integer ``labels`` and ``classes``.  Subsets are
seeded and stratified (``n_per_class``) or seeded uniform (``n``); token tasks take the first
``n`` words in file order, as Dalvi et al. take the first 150k training tokens.

Search order for files: ``$DIFFRED_DATA``, ``<project>/../shared/data``, ``<project>/data``,
then installed packages (Fashion-MNIST from Debian ``dataset-fashion-mnist``, ELPV from PyPI
``elpv-dataset``), then a download when online (CIFAR-10, Fashion-MNIST via torchvision).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from diffred.core import datasources
from diffred.core.data_manifest import MANIFEST
from diffred.core.datasources import seeded_split
from diffred.core.errors import AssetNotFound, check_choice
from diffred.core.images import image_array
from diffred.core.paths import cache_dir, data_dirs
from diffred.core.plugins import DATASET_GROUP, discovered

SPLITS = ("train", "dev", "test")


@dataclass
class Data:
    """One split (or subset) of a dataset (what :func:`load_dataset` returns).

    Attributes
    ----------
    name : str
        The dataset's short name (a key of :data:`DATASETS`).
    split : str
        ``"train"``, ``"dev"`` or ``"test"``.
    kind : {"image", "text", "text_pair", "tokens"}
        What the items are.
    items : list of N inputs
        kind 'image': JPEG/PNG bytes or uint8 arrays (H, W[, 3]); 'text': str; 'text_pair':
        (str, str); 'tokens': list[str] (a sentence's words).
    labels : ndarray of shape (N,), int64
        One label per item; for 'tokens', shape (total words,) with one tag per word, in
        sentence order.
    classes : list of str
        Label names: ``classes[label]``.
    ids : list of str
        One id per item (e.g. an archive member name, or ``file:index``).
    subset : dict
        The subset arguments that made it (``n_per_class``, ``n``, ``seed``); empty for a
        whole split.
    """
    name: str
    split: str
    kind: str
    items: list
    labels: np.ndarray
    classes: list[str]
    ids: list[str]
    subset: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def fingerprint(self) -> str:
        """Content address of this subset: dataset, split, item ids, labels."""
        h = hashlib.sha256(f"{self.name}|{self.split}|{self.kind}".encode())
        h.update("\n".join(self.ids).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()[:24]

    def take(self, index: np.ndarray, **subset) -> Data:
        index = np.asarray(index, dtype=np.int64)
        if self.kind == "tokens":
            raise ValueError("token datasets are subset by word count (n=...), not by index")
        return Data(self.name, self.split, self.kind, [self.items[i] for i in index],
                    self.labels[index], self.classes, [self.ids[i] for i in index],
                    {**self.subset, **subset})

    def images(self, size: int) -> np.ndarray:
        """All images as uint8 (N, 3, size, size), resized whole (bilinear) — for small CNNs."""
        if self.kind != "image":
            raise ValueError(f"dataset {self.name!r} holds {self.kind} items, not images")
        return image_array(self.items, size)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    task: str
    source: str
    licence: str
    how_to_get: str
    loader: Callable[[str], tuple[list, np.ndarray, list[str], list[str]]]
    splits: tuple = SPLITS


# --------------------------------------------------------------------------- file finding
def manifest_files(dataset: str) -> list[str]:
    """The dataset's files in the mirror layout (empty for installed packages)."""
    return [e["path"] for e in MANIFEST if e["dataset"] == dataset]


def find_file(relative: str, dataset: str) -> Path:
    """The first existing ``<data dir>/relative``, or :class:`AssetNotFound` naming the places."""
    tried = []
    for d in data_dirs():
        p = d / relative
        if p.exists():
            return p
        tried.append(str(p))
    fetch = f", or run `diffred data fetch {dataset}`" if manifest_files(dataset) else ""
    raise AssetNotFound(f"dataset {dataset!r}: {relative} not found; looked in {', '.join(tried)} "
                        f"(set DIFFRED_DATA to the folder holding it{fetch})")


# --------------------------------------------------------------------------- vision loaders
def _zip_images(zip_rel: str, dataset: str, prefix: str, label_from: Callable[[str], str]):
    path = find_file(zip_rel, dataset)
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(prefix)
                       and n.lower().endswith((".jpg", ".jpeg", ".png")))
        items = [zf.read(n) for n in names]
    labels = [label_from(n) for n in names]
    return items, labels, names


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _load_cifar10(split: str):
    check_choice("split of cifar10", split, ("train", "test"))
    try:
        items, names, ids = _zip_images("vision/cifar10-jpeg.zip", "cifar10", f"{split}/",
                                        lambda n: n.split("/")[1])
        labels = np.array([CIFAR10_CLASSES.index(n) for n in names])
        return items, labels, CIFAR10_CLASSES, ids
    except AssetNotFound as missing:
        return _torchvision("CIFAR10", split, missing)


def _torchvision(cls_name: str, split: str, missing: Exception):
    """Canonical download through torchvision (online users)."""
    import torchvision
    root = cache_dir() / "downloads"
    try:
        ds = getattr(torchvision.datasets, cls_name)(root, train=split == "train", download=True)
    except Exception as err:  # no network
        raise AssetNotFound(f"{missing}; torchvision download also failed: "
                            f"{type(err).__name__}") from None
    data = np.asarray(ds.data)
    return (list(data), np.asarray(ds.targets, dtype=np.int64), list(ds.classes),
            [f"{cls_name}/{split}/{i}" for i in range(len(data))])


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_fashion_mnist(split: str):
    check_choice("split of fashion_mnist", split, ("train", "test"))
    prefix = "train" if split == "train" else "t10k"
    places = [d / "vision" / "fashion-mnist" for d in data_dirs()] + [
        Path("/usr/share/datasets/fashion-mnist")]
    for folder in places:
        imgs = sorted(folder.glob(f"{prefix}-images-idx3-ubyte*"))
        labs = sorted(folder.glob(f"{prefix}-labels-idx1-ubyte*"))
        if imgs and labs:
            x, y = _read_idx(imgs[0]), _read_idx(labs[0]).astype(np.int64)
            return list(x), y, FASHION_CLASSES, [f"fmnist/{split}/{i}" for i in range(len(y))]
    missing = AssetNotFound(
        f"dataset 'fashion_mnist' not found; looked in {', '.join(map(str, places))} "
        f"(apt-get install dataset-fashion-mnist)")
    return _torchvision("FashionMNIST", split, missing)


def _load_sign_digits(split: str):
    check_choice("split of sign_digits", split, ("train", "test"))
    items, names, ids = _zip_images("vision/sign-language-digits.zip", "sign_digits", "Dataset/",
                                    lambda n: n.split("/")[1])
    labels = np.array([int(n) for n in names])
    keep = seeded_split(labels, split, 0.2, "test", "train")
    return [items[i] for i in keep], labels[keep], [str(d) for d in range(10)], [ids[i] for i in keep]


ELPV_CLASSES = ["functional (p=0)", "mildly defective (p=1/3)", "likely defective (p=2/3)",
                "defective (p=1)"]


def _load_elpv(split: str):
    check_choice("split of elpv", split, ("train", "test"))
    try:
        import elpv_dataset
    except ImportError:
        raise AssetNotFound("dataset 'elpv' not found: the PyPI package elpv-dataset is not "
                            "installed (pip install elpv-dataset)") from None
    folder = Path(elpv_dataset.__file__).parent / "data"
    rows = [line.split() for line in (folder / "labels.csv").read_text().splitlines() if line.strip()]
    probs = np.array([float(r[1]) for r in rows])
    labels = np.rint(probs * 3).astype(np.int64)
    keep = seeded_split(labels, split, 0.25, "test", "train")
    items = [(folder / rows[i][0]).read_bytes() for i in keep]
    return items, labels[keep], ELPV_CLASSES, [rows[i][0] for i in keep]


def _load_imagenet_sample(split: str):
    check_choice("split of imagenet_sample", split, ("test",))
    items, names, ids = _zip_images("vision/imagenet-sample-256.zip", "imagenet_sample", "",
                                    lambda n: Path(n).name.split("_")[0])
    wnids = sorted(set(names))
    return items, np.array([wnids.index(w) for w in names]), wnids, ids


# --------------------------------------------------------------------------- text loaders
def _read_tsv(path: Path, header: bool) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows[1 if header else 0:] if r]


def _dev_from_train(items, labels, split, seed=0):
    """Dalvi et al.: split the official train set 90/10 into train/dev."""
    keep = seeded_split(np.asarray(labels), split, 0.1, "dev", "train", seed)
    return [items[i] for i in keep], np.asarray(labels)[keep], keep


def _sentence_task(name, files: dict, parse, classes, dev_from_train: bool):
    def load(split: str):
        check_choice(f"split of {name}", split, SPLITS)
        fname = files["train" if (dev_from_train and split == "dev") else split]
        items, labels = parse(find_file(f"text/{name}/{fname}", name))
        ids = [f"{fname}:{i}" for i in range(len(items))]
        if dev_from_train and split in ("train", "dev"):
            items, labels, keep = _dev_from_train(items, labels, split)
            ids = [ids[i] for i in keep]
        return items, np.asarray(labels, dtype=np.int64), classes, ids
    return load


def _parse_sst2(path):
    rows = _read_tsv(path, header=True)
    return [r[0].strip() for r in rows], [int(r[1]) for r in rows]


def _parse_mrpc(path):
    rows = _read_tsv(path, header=True)
    return [(r[3], r[4]) for r in rows], [int(r[0]) for r in rows]


def _parse_cola(path):
    rows = _read_tsv(path, header=False)
    return [r[3] for r in rows], [int(r[1]) for r in rows]


def _parse_rte(path):
    rows = _read_tsv(path, header=True)
    return [(r[1], r[2]) for r in rows], [int(r[3] == "not_entailment") for r in rows]


TREC_CLASSES = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def _parse_trec(path):
    lines = path.read_bytes().decode("latin-1").splitlines()
    pairs = [line.split(" ", 1) for line in lines if line.strip()]
    return [q.strip() for _, q in pairs], [TREC_CLASSES.index(t.split(":")[0]) for t, _ in pairs]


def _token_task(name, files: dict, read_sentences, tag_set: list[str] | None, dev_from_train):
    """Token tasks: items are word lists, labels one tag per word (flattened)."""
    def load(split: str):
        check_choice(f"split of {name}", split, SPLITS)
        fname = files["train" if (dev_from_train and split == "dev") else split]
        sents = read_sentences(find_file(f"text/{files['folder']}/{fname}", name))
        if dev_from_train and split in ("train", "dev"):
            # last 10% of the training sentences form dev, keeping file order
            cut = int(round(0.9 * len(sents)))
            sents = sents[:cut] if split == "train" else sents[cut:]
        # one tag inventory for every split (a tag seen only in test must not shift indices)
        classes = tag_set or sorted({t for f in {files[k] for k in SPLITS if k in files}
                                     for _, tags in read_sentences(
                                         find_file(f"text/{files['folder']}/{f}", name))
                                     for t in tags})
        items = [words for words, _ in sents]
        labels = [np.array([classes.index(t) for t in tags]) for _, tags in sents]
        ids = [f"{fname}:{i}" for i in range(len(items))]
        return items, labels, classes, ids
    return load


def _read_conllu(path: Path):
    sents, words, tags = [], [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if words:
                    sents.append((words, tags))
                words, tags = [], []
            elif not line.startswith("#"):
                cols = line.split("\t")
                if cols[0].isdigit():  # skip multiword ranges (1-2) and empty nodes (1.1)
                    words.append(cols[1])
                    tags.append(cols[3])
    if words:
        sents.append((words, tags))
    return sents


def _read_columns(tag_col: int):
    def read(path: Path):
        sents, words, tags = [], [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words:
                    sents.append((words, tags))
                words, tags = [], []
            else:
                words.append(cols[0])
                tags.append(cols[tag_col])
        if words:
            sents.append((words, tags))
        return sents
    return read


UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X", "_"]

# --------------------------------------------------------------------------- registry
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("cifar10", "image", "10-way object classification, 32x32",
                "DIFFRED_DATA vision/cifar10-jpeg.zip (JPEG copy); online: torchvision",
                "MIT-style (Krizhevsky 2009)", "place cifar10-jpeg.zip under $DIFFRED_DATA/vision",
                _load_cifar10, ("train", "test")),
    DatasetSpec("fashion_mnist", "image", "10-way clothing classification, 28x28 grey",
                "Debian dataset-fashion-mnist; online: torchvision", "MIT",
                "apt-get install dataset-fashion-mnist", _load_fashion_mnist, ("train", "test")),
    DatasetSpec("elpv", "image", "4-way solar-cell defect probability, 300x300 grey",
                "PyPI elpv-dataset (seeded 75/25 split)", "CC BY-NC-SA 4.0",
                "pip install elpv-dataset", _load_elpv, ("train", "test")),
    DatasetSpec("sign_digits", "image", "10-way hand-sign digits, 100x100",
                "DIFFRED_DATA vision/sign-language-digits.zip (seeded 80/20 split)", "Apache-2.0",
                "place sign-language-digits.zip under $DIFFRED_DATA/vision",
                _load_sign_digits, ("train", "test")),
    DatasetSpec("imagenet_sample", "image", "1000 ImageNet val-style images, one per class",
                "DIFFRED_DATA vision/imagenet-sample-256.zip", "ImageNet terms (research)",
                "place imagenet-sample-256.zip under $DIFFRED_DATA/vision",
                _load_imagenet_sample, ("test",)),
    DatasetSpec("sst2", "text", "binary sentiment (GLUE SST-2; test = GLUE dev)",
                "DIFFRED_DATA text/sst2", "see GLUE", "place sst2/ under $DIFFRED_DATA/text",
                _sentence_task("sst2", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
                               _parse_sst2, ["negative", "positive"], False)),
    DatasetSpec("mrpc", "text_pair", "paraphrase (MRPC)", "DIFFRED_DATA text/mrpc",
                "Microsoft shared-source", "place mrpc/ under $DIFFRED_DATA/text",
                _sentence_task("mrpc", {"train": "train.txt", "test": "test.txt"}, _parse_mrpc,
                               ["not paraphrase", "paraphrase"], True)),
    DatasetSpec("cola", "text", "grammatical acceptability (CoLA; test = in-domain dev)",
                "DIFFRED_DATA text/cola", "see CoLA", "place cola/ under $DIFFRED_DATA/text",
                _sentence_task("cola", {"train": "in_domain_train.tsv", "test": "in_domain_dev.tsv"},
                               _parse_cola, ["unacceptable", "acceptable"], True)),
    DatasetSpec("rte", "text_pair", "textual entailment (RTE)", "DIFFRED_DATA text/rte",
                "see GLUE", "place rte/ under $DIFFRED_DATA/text",
                _sentence_task("rte", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
                               _parse_rte, ["entailment", "not_entailment"], False)),
    DatasetSpec("trec", "text", "6-way question type (TREC coarse)", "DIFFRED_DATA text/trec",
                "public (NLTK qc)", "place trec/ under $DIFFRED_DATA/text",
                _sentence_task("trec", {"train": "train.txt", "test": "test.txt"}, _parse_trec,
                               TREC_CLASSES, True)),
    DatasetSpec("ud_pos", "tokens", "universal POS tagging (UD English-EWT, 17 UPOS)",
                "DIFFRED_DATA text/ud-en-ewt", "CC BY-SA 4.0",
                "place ud-en-ewt/ under $DIFFRED_DATA/text",
                _token_task("ud_pos", {"folder": "ud-en-ewt", "train": "en_ewt-ud-train.conllu.gz",
                                       "dev": "en_ewt-ud-dev.conllu.gz",
                                       "test": "en_ewt-ud-test.conllu.gz"},
                            _read_conllu, UPOS, False)),
    DatasetSpec("conll2000_chunk", "tokens", "chunking (CoNLL-2000, IOB)",
                "DIFFRED_DATA text/conll2000", "research use (WSJ text, NLTK data)",
                "place conll2000/ under $DIFFRED_DATA/text",
                _token_task("conll2000_chunk", {"folder": "conll2000", "train": "train.txt",
                                                "test": "test.txt"}, _read_columns(2), None, True)),
    DatasetSpec("conll2003_ner", "tokens", "named entities (CoNLL-2003, BIO)",
                "DIFFRED_DATA text/conll2003", "research use (Reuters text)",
                "place conll2003/ under $DIFFRED_DATA/text",
                _token_task("conll2003_ner", {"folder": "conll2003", "train": "train.txt",
                                              "dev": "dev.txt", "test": "test.txt"},
                            _read_columns(1), None, False)),
]}


def registered_datasets() -> dict[str, DatasetSpec]:
    """The built-in :data:`DATASETS` and the datasets installed packages register as plugins
    (entry-point group ``diffred.datasets``, :mod:`diffred.core.plugins`)."""
    return {**DATASETS, **discovered(DATASET_GROUP, DatasetSpec, frozenset(DATASETS))}


def dataset_spec(name: str) -> DatasetSpec:
    """A registered dataset (built-in or plugin), or one of your own by path or hub name
    (``imagefolder:<folder>``, ``npz:<file>``, ``hf:<dataset>``; :mod:`diffred.core.datasources`);
    else a one-line error naming the valid choices."""
    if name.startswith("imagefolder:"):
        return DatasetSpec(name, "image", "images in class folders", name, "yours", "",
                           lambda split: datasources.load_imagefolder(name, split),
                           tuple(datasources.folder_splits(name)))
    if name.startswith("npz:"):
        return DatasetSpec(name, "image", "uint8 image arrays", name, "yours", "",
                           lambda split: datasources.load_npz(name, split),
                           datasources.npz_splits(name))
    if name.startswith("hf:"):
        kind, splits = datasources.hf_kind_and_splits(name)
        return DatasetSpec(name, kind, "Hugging Face hub dataset", name, "per dataset", "",
                           lambda split: datasources.load_hf(name, split), splits)
    known = registered_datasets()
    check_choice("dataset", name, list(known) + [f"{p}<...>" for p in datasources.PREFIXES])
    return known[name]


@lru_cache(maxsize=32)
def _load_split(name: str, split: str):
    return dataset_spec(name).loader(split)


def load_dataset(name: str, split: str = "train", n_per_class: int | None = None,
                 n: int | None = None, seed: int = 0) -> Data:
    """Load a dataset split by short name, optionally a seeded subset.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` (e.g. ``"cifar10"``, ``"sst2"``, ``"ud_pos"``), a plugin's
        name, or data of your own: ``imagefolder:<folder>``, ``npz:<file>``, ``hf:<dataset>``
        (:mod:`diffred.core.datasources`).
    split : str, default "train"
        ``"train"``, ``"dev"`` or ``"test"``, as far as the dataset has it
        (``DATASETS[name].splits``).
    n_per_class : int or None, default None
        Stratified subset: at most this many items per class (>= 1), seeded; not for token
        tasks.
    n : int or None, default None
        Uniform seeded subset of n items (>= 1), taken after ``n_per_class`` when both are
        given; for token tasks, the first n words (whole sentences, in file order).
    seed : int, default 0
        Seed of the subsets.

    Returns
    -------
    Data
        ``items`` (N inputs), ``labels`` of shape (N,) (token tasks: one tag per word),
        ``classes``, ``ids`` and the ``subset`` arguments.
    """
    spec = dataset_spec(name)
    check_choice(f"split of {name}", split, spec.splits)
    items, labels, classes, ids = _load_split(name, split)
    if spec.kind == "tokens":
        if n_per_class is not None:
            raise ValueError(f"{name} is a token task: subset it with n=<words>, not n_per_class")
        return _token_subset(name, split, items, labels, classes, ids, n)
    data = Data(name, split, spec.kind, items, np.asarray(labels), list(classes), list(ids))
    if n_per_class is not None:
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        rng = np.random.default_rng(seed)
        index = np.concatenate([rng.permutation(np.flatnonzero(data.labels == c))[:n_per_class]
                                for c in range(len(classes))])
        data = data.take(np.sort(index), n_per_class=n_per_class, seed=seed)
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        index = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
        data = data.take(index, n=n, seed=seed)
    return data


def _token_subset(name, split, sents, tags, classes, ids, n_words):
    keep, total = [], 0
    for i, words in enumerate(sents):
        if n_words is not None and total >= n_words:
            break
        keep.append(i)
        total += len(words)
    labels = np.concatenate([tags[i] for i in keep]) if keep else np.zeros(0, np.int64)
    return Data(name, split, "tokens", [sents[i] for i in keep], labels.astype(np.int64),
                list(classes), [ids[i] for i in keep], {"n": n_words} if n_words else {})


def dataset_available(name: str) -> tuple[bool, str]:
    """(available, where) without loading everything."""
    if name not in DATASETS:     # a plugin, or a path: its spec says whether it is there
        try:
            spec = dataset_spec(name)
            return True, spec.source
        except (AssetNotFound, ValueError, ImportError) as err:
            return False, str(err)
    spec = DATASETS[name]
    try:
        if manifest_files(name):     # every file of the mirror layout, wherever it is found
            found = [find_file(rel, name) for rel in manifest_files(name)]
            return True, str(found[0] if len(found) == 1 else found[0].parent)
        if name == "elpv":
            import elpv_dataset
            return True, str(Path(elpv_dataset.__file__).parent)
        if name == "fashion_mnist":
            for d in [d / "vision" / "fashion-mnist" for d in data_dirs()] + [
                    Path("/usr/share/datasets/fashion-mnist")]:
                if list(d.glob("train-images-idx3-ubyte*")):
                    return True, str(d)
        return False, spec.how_to_get
    except (AssetNotFound, ImportError):
        return False, spec.how_to_get
