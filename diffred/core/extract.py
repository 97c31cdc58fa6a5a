"""Feature extraction with a content-addressed cache shared by every chapter.

``features(model, dataset, split, layer, ...)`` returns a :class:`Features` — ``X`` (N, D)
float32 and labels ``y`` (N,) — computing it once and caching it on disk.  The cache key holds
the weights hash, the data subset's fingerprint, the preprocessing, the layer and the code
version of the extraction (:func:`extract_version`: the functions that compute the features,
followed transitively); the model is only loaded on a miss, so warm runs never touch it.

Vision layers: ``"penultimate"`` (pooled pre-logits) or any module name (e.g. ``"blocks.3"``),
globally average-pooled; ``"<module>:flat"`` keeps that module's whole C x H x W map, flattened
(Nanda et al.'s middle layers).  Text layers: ``0`` (embeddings) … ``L`` (last block) or
``"all"``; sentence tasks pool ``"cls"`` or ``"mean"``; token tasks take each word's last sub-token
(Dalvi et al.).  CUDA is used when present (autocast, larger batches); CPU otherwise.
``precision`` ("auto" | "fp32" | "bf16", see :mod:`diffred.core.precision`) picks the arithmetic;
features are stored float32 and every path but exact fp32 is part of the cache key.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from diffred.core.cache import ArrayStore, hash_key
from diffred.core.codeversion import code_version
from diffred.core.datasets import Data, load_dataset
from diffred.core.device import default_device
from diffred.core.errors import check_choice
from diffred.core.images import image_batches, normalise, prefetch
from diffred.core.models import (
    Backbone,
    load_model,
    model_fingerprint,
    model_kind,
    registered_models,
)
from diffred.core.precision import autocast, cache_tag, prepare_vision, resolve

SENTENCE_POOLINGS = ("cls", "mean")
FLAT = ":flat"       # layer suffix: a vision stage's whole C x H x W map, flattened
STORE = ArrayStore("features")


@dataclass
class Features:
    """Cached activations of one layer (what :func:`features` returns).

    Attributes
    ----------
    X : ndarray of shape (N, D), float32
        One row per input (per word for token tasks); shape (N, V, D) for ``views`` augmented
        views per image.  Memory-mapped read-only from the cache.
    y : ndarray of shape (N,), int64
        Labels.
    classes : list of str
        Label names.
    meta : dict
        Provenance: model, weights hash, dataset subset, preprocessing, layer, code version,
        cache key.
    """
    X: np.ndarray
    y: np.ndarray
    classes: list
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        """``X.shape``."""
        return self.X.shape


# --------------------------------------------------------------------------- public API
def features(model: str | Backbone, dataset: str | Data, split: str = "train",
             layer="penultimate", *, n_per_class: int | None = None, n: int | None = None,
             seed: int = 0, pooling: str = "mean", resolution: int | None = None, views: int = 0,
             batch_size: int | None = None, device: str | None = None,
             precision: str | None = None, progress: bool = True,
             verify: bool | None = None) -> Features:
    """Features of ``layer`` of ``model`` on a dataset split (cached).

    A registry model is only loaded on a cache miss (hub models: always, for their weights
    hash); ``layer`` may be a list, extracted in one forward pass.

    Parameters
    ----------
    model : str or Backbone
        A registry name (:data:`~diffred.core.models.MODELS`, a plugin, ``timm:<arch>``, ``hf:<repo>``),
        or a loaded text :class:`~diffred.core.models.Backbone` (e.g. a fine-tuned encoder,
        :mod:`diffred.core.finetune`) cached under its name and fingerprint.
    dataset : str or Data
        A dataset name (:func:`~diffred.core.datasets.load_dataset`), or a loaded
        :class:`~diffred.core.datasets.Data` (then ``split``, ``n_per_class``, ``n`` and
        ``seed`` are not used).
    split : str, default "train"
        As in :func:`~diffred.core.datasets.load_dataset`.
    layer : str, int or list, default "penultimate"
        Vision: ``"penultimate"`` (pooled pre-logits), any module name (globally
        average-pooled) or ``"<module>:flat"`` (the whole map, flattened).  Text: ``0``
        (embeddings) … ``L`` (last block), or ``"all"``.  A list (or ``"all"``) returns a
        ``{layer: Features}`` dict.
    n_per_class, n, seed : int or None
        The subset, as in :func:`~diffred.core.datasets.load_dataset`.
    pooling : {"mean", "cls"}, default "mean"
        Sentence tasks (text models); token tasks always take each word's last sub-token.
    resolution : int or None, default None
        Overrides the model's input size (vision).
    views : int, default 0
        > 0: ``views`` seeded augmented views per image (random resized crop + flip), X of
        shape (N, views, D) (vision only).
    batch_size : int or None, default None
        Inputs per forward pass; None: 32 on CPU, 256 (vision) or 128 (text) on CUDA.
    device : str or None, default None
        Torch device; None: CUDA when present, else CPU.
    precision : {"auto", "fp32", "bf16"} or None, default None
        "auto": bf16 only where the CPU has it and it is faithful for the model, else the
        fastest float32 path; "fp32": today's exact path and cache key; "bf16": the bf16
        path (:mod:`diffred.core.precision`); None:
        :func:`diffred.core.precision.setting` (a chapter's ``precision`` parameter).
    progress : bool, default True
        Show a progress bar while extracting.
    verify : bool or None, default None
        The cache's integrity check of an entry found (None: hash each file on its first open
        in this process; False: sizes only — for a caller that needs the features' content
        keys, not their values).

    Returns
    -------
    Features or dict of layer to Features
        ``X`` of shape (N, D) float32 (or (N, views, D)) and ``y`` of shape (N,); a dict when
        ``layer`` is a list or ``"all"``.
    """
    data = dataset if isinstance(dataset, Data) else load_dataset(
        dataset, split, n_per_class=n_per_class, n=n, seed=seed)
    many = isinstance(layer, (list, tuple)) or layer == "all"
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    # a loaded Backbone (e.g. a fine-tuned encoder) is cached under its name and fingerprint
    backbone = model if isinstance(model, Backbone) else None
    model = backbone.name if backbone else model
    kind = backbone.kind if backbone else model_kind(model)
    _check_model_data(model, kind, data)
    if kind == "text":
        layers = _text_layers(backbone or model, layers)
        pooling = "last" if data.kind == "tokens" else pooling
        if data.kind != "tokens":
            check_choice("pooling", pooling, SENTENCE_POOLINGS)
    if views and kind != "vision":
        raise ValueError("views (augmented views) are only defined for vision models")
    device = device or default_device()
    path = resolve(precision, device, model, kind)
    fingerprint = backbone.fingerprint if backbone else model_fingerprint(model)
    backbone = backbone or (None if fingerprint else load_model(model))
    fingerprint = fingerprint or backbone.fingerprint
    base = {"model": model, "weights": fingerprint, "data": data.fingerprint,
            "dataset": data.name, "split": data.split, "subset": data.subset, "n": len(data),
            "version": extract_version(kind), **cache_tag(path)}
    if kind == "vision":
        base["preprocess"] = _vision_preprocess(model, data, resolution, backbone)
        base["views"] = views
        specs = {lay: {**base, "layer": lay} for lay in layers}
    else:
        specs = {lay: {**base, "layer": lay, "pooling": pooling} for lay in layers}
    out = {lay: STORE.load(hash_key(spec), mmap=True, verify=verify)
           for lay, spec in specs.items()}
    missing = [lay for lay, hit in out.items() if hit is None]
    if missing:
        backbone = backbone or load_model(model)
        if kind == "vision":
            _extract_vision(backbone, data, {lay: specs[lay] for lay in missing}, base,
                            batch_size, device, progress, path)
        else:
            _extract_text(backbone, data, base, batch_size, device, progress, path)
        out = {lay: STORE.load(hash_key(spec), mmap=True) for lay, spec in specs.items()}
    result = {}
    for lay, (arrays, meta) in out.items():
        result[lay] = Features(arrays["X"], np.asarray(arrays["y"]), data.classes,
                               {**meta.get("spec", specs[lay]), "key": hash_key(specs[lay])})
    return result if many else result[layers[0]]


def _check_model_data(model, kind, data):
    ok = {"vision": ("image",), "text": ("text", "text_pair", "tokens")}[kind]
    if data.kind not in ok:
        raise ValueError(f"model {model!r} ({kind}) cannot read dataset {data.name!r} ({data.kind})")


def _text_layers(model, layers):
    out = []
    for lay in layers:
        if lay == "all":
            out.extend(range(text_num_layers(model) + 1))
        elif isinstance(lay, (int, np.integer)) and lay >= 0:
            out.append(int(lay))
        else:
            raise ValueError(f"unknown text layer {lay!r}; valid choices: 0..L (0 = embeddings) "
                             f"or 'all'")
    return out


def text_num_layers(model) -> int:
    """Number of transformer blocks L (hidden states are 0..L); model: name or Backbone."""
    if isinstance(model, Backbone):
        return model.num_layers
    spec = registered_models().get(model)
    if spec is not None and "num_layers" in spec.inputs:
        return spec.inputs["num_layers"]
    return load_model(model).num_layers


# --------------------------------------------------------------------------- vision
def _vision_preprocess(model, data, resolution, backbone):
    """Input size, resampling and normalisation: the model's ``inputs`` config (timm's
    pretrained config for timm models), from the registry (no weights loaded) or from the
    loaded backbone (hub models)."""
    inputs = registered_models()[model].inputs if backbone is None else backbone.inputs
    return {"resolution": int(resolution or inputs["resolution"]), "mean": list(inputs["mean"]),
            "std": list(inputs["std"]),
            # ImageNet images are evaluated with the usual centre crop; small target images
            # are resized whole.
            "crop_pct": inputs["crop_pct"] if data.name == "imagenet_sample" else 1.0,
            "interpolation": inputs.get("interpolation", "bilinear")}


def _extract_vision(backbone: Backbone, data: Data, specs: dict, base: dict, batch_size,
                    device, progress, path="fp32"):
    import torch
    from tqdm.auto import tqdm
    prep, views = base["preprocess"], base["views"]
    layers = list(specs)
    run = prepare_vision(backbone.module.to(device), path, keep=layers)  # copy unless fp32
    model = run.module
    batch_size = batch_size or (256 if device.startswith("cuda") else 32)
    modules = dict(model.named_modules())
    for lay in layers:
        if lay != "penultimate" and lay.removesuffix(FLAT) not in modules:
            raise ValueError(f"unknown layer {lay!r} of {backbone.name}; valid choices: "
                             f"penultimate, {', '.join(backbone.stages)} (or any module name, "
                             f"with {FLAT!r} to keep the whole map)")
    captured: dict = {}

    def keep(lay, o):
        flat = lay.endswith(FLAT)
        captured[lay] = o.float().flatten(1) if flat else \
            o.float().mean(dim=(2, 3)) if o.ndim == 4 else o.float()
    hooks = [modules[lay.removesuffix(FLAT)].register_forward_hook(
        lambda m, i, o, lay=lay: keep(lay, o)) for lay in layers if lay != "penultimate"]
    n_rows = len(data) * max(views, 1)
    try:
        with ExitStack() as entries:   # every entry commits together, or none does
            writers = {lay: entries.enter_context(STORE.writer(hash_key(spec), {"spec": spec}))
                       for lay, spec in specs.items()}
            outs = {}
            bar = tqdm(total=n_rows, desc=f"{backbone.name} | {data.name}/{data.split}",
                       disable=not progress, unit="img")
            row = 0
            with torch.inference_mode(), run.context():
                for batch in prefetch(image_batches(data.items, prep, batch_size, views)):
                    x = run.input(normalise(batch, prep, device))
                    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
                    captured["penultimate"] = pooled.float()
                    for lay in layers:
                        feat = captured[lay].cpu().numpy()
                        if lay not in outs:
                            shape = (len(data), views, feat.shape[1]) if views else \
                                (n_rows, feat.shape[1])
                            outs[lay] = writers[lay].empty("X", shape)
                        outs[lay].reshape(n_rows, -1)[row:row + len(feat)] = feat
                    row += len(batch)
                    bar.update(len(batch))
            bar.close()
            _finish(writers, outs, data.labels)
    finally:
        for h in hooks:
            h.remove()


def _finish(writers: dict, arrays: dict, labels: np.ndarray) -> None:
    """Flush each entry's memory-mapped X and add the labels before the entries commit."""
    for key, w in writers.items():
        arrays.pop(key).flush()
        w.put("y", labels)


# --------------------------------------------------------------------------- text
def _encode(tokenizer, data: Data, order: np.ndarray, max_length: int):
    items = [data.items[i] for i in order]
    if data.kind == "tokens":
        return tokenizer(items, is_split_into_words=True, truncation=True, max_length=max_length,
                         padding=True, return_tensors="pt")
    if data.kind == "text_pair":
        return tokenizer([a for a, _ in items], [b for _, b in items], truncation=True,
                         max_length=max_length, padding=True, return_tensors="pt")
    return tokenizer(items, truncation=True, max_length=max_length, padding=True,
                     return_tensors="pt")


def last_subtoken_index(word_ids: list, n_words: int) -> np.ndarray:
    """Position of each word's last sub-token; words lost to truncation reuse the last one kept.

    word_ids: per sub-token position, the word index or None (special tokens)."""
    last = np.full(n_words, -1, dtype=np.int64)
    for pos, w in enumerate(word_ids):
        if w is not None:
            last[w] = pos
    for w in range(n_words):  # words with no sub-token (rare): previous word's position
        if last[w] < 0:
            last[w] = last[w - 1] if w > 0 else 0
    return last


def _extract_text(backbone: Backbone, data: Data, base: dict, batch_size, device, progress,
                  path="fp32"):
    import torch
    from tqdm.auto import tqdm
    model, tok = backbone.module.to(device), backbone.tokenizer
    tokens = data.kind == "tokens"
    max_length = 512 if tokens else 128
    batch_size = batch_size or (128 if device.startswith("cuda") else 32)
    lengths = np.array([len(x) if tokens else len(str(x)) for x in data.items])
    order = np.argsort(-lengths, kind="stable")  # long first: less padding, early OOM
    n_rows = int(sum(len(w) for w in data.items)) if tokens else len(data)
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in data.items])]) if tokens else None
    poolings = ("last",) if tokens else SENTENCE_POOLINGS
    L, D = backbone.num_layers, backbone.feature_dim
    specs = {(lay, p): {**base, "layer": lay, "pooling": p}
             for lay in range(L + 1) for p in poolings}
    with ExitStack() as entries:       # every entry commits together, or none does
        writers = {key: entries.enter_context(STORE.writer(hash_key(spec), {"spec": spec}))
                   for key, spec in specs.items()}
        arrays = {key: w.empty("X", (n_rows, D)) for key, w in writers.items()}
        bar = tqdm(total=len(data), desc=f"{backbone.name} | {data.name}/{data.split}",
                   disable=not progress, unit="seq")
        with torch.inference_mode(), autocast(path):
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = _encode(tok, data, idx, max_length)
                hidden = model(**{k: v.to(device) for k, v in enc.items()}).hidden_states
                mask = enc["attention_mask"].to(device).unsqueeze(-1).float()
                if tokens:
                    gather = [last_subtoken_index(enc.word_ids(b), len(data.items[i]))
                              for b, i in enumerate(idx)]
                for lay, h in enumerate(hidden):
                    h = h.float()
                    if tokens:
                        for b, i in enumerate(idx):
                            rows = h[b, torch.from_numpy(gather[b]).to(device)].cpu().numpy()
                            arrays[(lay, "last")][offsets[i]:offsets[i + 1]] = rows
                    else:
                        arrays[(lay, "cls")][idx] = h[:, 0].cpu().numpy()
                        arrays[(lay, "mean")][idx] = ((h * mask).sum(1) / mask.sum(1)).cpu().numpy()
                bar.update(len(idx))
        bar.close()
        _finish(writers, arrays, data.labels)


#: the code that computes each kind of feature, captured at import (what the keys follow)
_CODE = {"vision": (_extract_vision,), "text": (_extract_text,)}


def extract_version(kind: str) -> str:
    """The code version of ``kind`` ('vision' | 'text') features: the extraction functions and
    everything they call (:func:`diffred.core.codeversion.code_version`)."""
    check_choice("feature kind", kind, _CODE)
    return code_version(*_CODE[kind])
