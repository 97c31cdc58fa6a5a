"""Extraction pipeline throughput vs bare ``model(x)`` on preloaded tensors of the same shape.

The pipeline = JPEG decode + resize in a prefetch thread + normalise + forward + pooling +
writing the memory-mapped cache entry.  Target: >= 85% of the bare forward's images/s.
    python benchmarks/extract.py [--model efficientnet_lite0] [--n 512] [--resolution 160]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import diffred.extract as ex
from diffred import load_dataset, load_model
from diffred.cache import ArrayStore
from diffred.device import default_device
from diffred.images import image_batches, normalise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    device = default_device()
    data = load_dataset(args.dataset, "test", n=args.n, seed=1)
    backbone = load_model(args.model)
    model = backbone.module.to(device)
    R, B = args.resolution, args.batch_size

    # the same images, decoded, resized and normalised beforehand (random tensors are no
    # fair stand-in: on CPU they drive activations into slow denormal arithmetic)
    prep = ex._vision_preprocess(args.model, data, R, backbone)
    batches = [normalise(b, prep, device) for b in image_batches(data.items, prep, B)]

    def bare_forward() -> float:
        """images/s of the model alone on preloaded tensors."""
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for xb in batches:
                model.forward_head(model.forward_features(xb), pre_logits=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return sum(len(b) for b in batches) / (time.perf_counter() - t0)

    bare_forward()                                         # warm-up
    bare = max(bare_forward(), bare_forward())             # best of two: the fairest baseline

    with tempfile.TemporaryDirectory() as tmp:
        ex.STORE = ArrayStore("features", root=Path(tmp))   # cold cache, same code path
        t0 = time.perf_counter()
        ex.features(args.model, data, resolution=R, batch_size=B, device=device, progress=False)
        pipeline = len(data) / (time.perf_counter() - t0)
    print(f"{args.model} @ {R}px, batch {B}, {device}, {len(data)} {args.dataset} images")
    print(f"bare model(x) on preloaded tensors: {bare:7.1f} img/s")
    print(f"extraction pipeline (cold cache)  : {pipeline:7.1f} img/s")
    print(f"ratio                             : {100 * pipeline / bare:7.1f} %   (target >= 85%)")


if __name__ == "__main__":
    main()
