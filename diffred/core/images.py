"""The one image path: decode, resize / centre-crop / augmented view, batch, normalise.

Images travel as uint8 arrays (3, R, R) and are normalised on the device, per batch, with a
model's input config (:attr:`diffred.core.models.ModelSpec.inputs`: ``resolution``, ``mean``,
``std``, ``crop_pct``, ``interpolation``) as ``(x/255 - mean) / std``.  Used by
:meth:`diffred.core.datasets.Data.images` (whole sets for the small CNNs of chapter 4),
:mod:`diffred.core.extract` (frozen backbones) and :mod:`diffred.core.training`.
"""
from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from diffred.core.errors import check_choice


def decode_image(item):
    """An item of an image dataset (encoded bytes or uint8 array) as an RGB PIL image."""
    from PIL import Image
    img = Image.open(io.BytesIO(item)) if isinstance(item, (bytes, bytearray)) else \
        Image.fromarray(np.asarray(item))
    return img.convert("RGB")


#: timm's interpolation names -> PIL resampling filters
RESAMPLING = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}


def preprocess_image(item, resolution: int, crop_pct: float = 1.0, rng=None,
                     interpolation: str = "bilinear") -> np.ndarray:
    """Decode and bring one image to ``resolution`` x ``resolution``: uint8 (3, R, R).

    ``crop_pct`` < 1: resize the short side to ``resolution / crop_pct`` and centre-crop (the
    usual ImageNet evaluation, as timm's); ``crop_pct`` = 1: resize the whole image.  With a
    numpy Generator ``rng``: a seeded augmented view, RandomResizedCrop(scale=(0.5, 1)) plus
    a horizontal flip with probability 1/2.  Every resize uses ``interpolation`` (one of
    :data:`RESAMPLING`; a timm model's pretrained config says which).
    """
    from PIL import Image
    check_choice("interpolation", interpolation, RESAMPLING)
    resample = RESAMPLING[interpolation]
    img = decode_image(item)
    if rng is not None:
        w, h = img.size
        area = w * h * rng.uniform(0.5, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(np.sqrt(area * ratio))))
        ch = int(min(h, round(np.sqrt(area / ratio))))
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((resolution, resolution), resample)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
    elif crop_pct < 1.0:
        scale = int(resolution / crop_pct)
        w, h = img.size
        s = scale / min(w, h)
        img = img.resize((max(scale, round(w * s)), max(scale, round(h * s))), resample)
        w, h = img.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    else:
        img = img.resize((resolution, resolution), resample)
    return np.asarray(img).transpose(2, 0, 1)


def image_array(items: Sequence, resolution: int) -> np.ndarray:
    """Every item resized whole (bilinear) to uint8 (N, 3, R, R)."""
    out = np.empty((len(items), 3, resolution, resolution), dtype=np.uint8)
    for i, item in enumerate(items):
        out[i] = preprocess_image(item, resolution)
    return out


def image_batches(items: Sequence, prep: dict, batch_size: int, views: int = 0,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """Yield uint8 batches (B, 3, R, R) of ``items`` in order (with ``views``: item-major,
    view v of item i drawn with the generator seeded ``[seed, i, v]``).

    prep: ``resolution``, ``crop_pct`` and ``interpolation`` (see :func:`preprocess_image`)."""
    res, crop = prep["resolution"], prep["crop_pct"]
    interpolation = prep.get("interpolation", "bilinear")
    jobs = [(i, v) for i in range(len(items)) for v in range(max(views, 1))]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        yield np.stack([preprocess_image(items[i], res, crop,
                                         np.random.default_rng([seed, i, v]) if views else None,
                                         interpolation)
                        for i, v in chunk])


def prefetch(iterable: Iterable, depth: int = 2) -> Iterator:
    """Run a generator in a background thread, ``depth`` items ahead (errors re-raised here)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work():
        try:
            for x in iterable:
                q.put(x)
            q.put(done)
        except BaseException as err:  # re-raised in the consumer
            q.put(err)

    threading.Thread(target=work, daemon=True).start()
    while (x := q.get()) is not done:
        if isinstance(x, BaseException):
            raise x
        yield x


def normalise(batch, inputs: dict, device: str, divide_first: bool = False):
    """uint8 images (B, 3, R, R) (numpy or torch) -> float32 model input on ``device``:
    ``(x/255 - mean) / std`` with ``inputs['mean']``, ``inputs['std']``.

    Computed as ``(x - 255 mean) / (255 std)`` (correctly rounded for mean = std = 0.5), or,
    with ``divide_first``, as ``x / (255 std) - mean / std``: the same map, rounded differently
    (up to 6e-8 apart), which the trained runs of :mod:`diffred.core.training` were made with —
    training amplifies even that, so each path keeps its rounding and its numbers.
    """
    import torch
    x = torch.as_tensor(batch).to(device, non_blocking=True).float()
    mean = torch.tensor(inputs["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(inputs["std"], device=device).view(1, 3, 1, 1)
    if divide_first:
        return x / (std * 255) - mean / std
    return (x - mean * 255) / (std * 255)
