"""Text extraction (chapter 2) and training (chapter 4) per precision path, with fidelity.

Text: the extraction pipeline (tokenise + forward + pooling of every layer + cache write, cold
cache) of MiniLM and MPNet at ``precision="fp32"`` (today's path) and ``"auto"``, in sub-tokens/s
(non-padding tokens), and the largest relative hidden-state error of any layer vs fp32.
Training: SGD steps/s of chapter 4's two architectures (small ResNet w16 at 32 px, batch 64;
efficientnet_lite0 at 64 px, batch 32) on every training path (fp32, channels-last, bf16), in
images/s, with the mean loss of the timed steps (same seed, same batches).
Interleaved rounds, best of each (the machine is shared).
    python benchmarks/precision.py [--n 256] [--steps 30] [--rounds 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import diffred.core.extract as ex
import diffred.core.precision as pr
from diffred import load_dataset, load_model
from diffred.core.cache import ArrayStore
from diffred.core.models import Arch, build_model
from diffred.core.precision import prepare_input, prepare_model, training_context


def text_rate(model: str, data, precision: str):
    """(sub-tokens/s, {layer: X}) of one cold extraction of every layer."""
    with tempfile.TemporaryDirectory() as tmp:
        ex.STORE = ArrayStore("features", root=Path(tmp))
        t0 = time.perf_counter()
        out = ex.features(model, data, layer="all", precision=precision, progress=False)
        seconds = time.perf_counter() - t0
        return seconds, {k: np.array(f.X, np.float64) for k, f in out.items()}


def sub_tokens(model: str, data) -> int:
    tok = load_model(model).tokenizer
    return int(sum(sum(tok(str(x), truncation=True, max_length=128)["attention_mask"])
                   for x in data.items))


def train_rate(arch: Arch, path: str, steps: int, batch: int, seed: int = 0):
    """(images/s, mean loss) of ``steps`` SGD steps on random uint8-range images."""
    gen = torch.Generator().manual_seed(seed)
    R = arch.resolution
    x = torch.randint(0, 256, (batch * 4, 3, R, R), generator=gen).float() / 255
    x = (x - 0.5) / 0.25
    y = torch.randint(0, 10, (batch * 4,), generator=gen)
    model = prepare_model(build_model(arch, 10, seed), path).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []

    def step(i):
        idx = slice((i % 4) * batch, (i % 4 + 1) * batch)
        with training_context(path):
            loss = F.cross_entropy(model(prepare_input(x[idx], path)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step(0)                                           # warm-up (kernel creation)
    t0 = time.perf_counter()
    for i in range(steps):
        losses.append(step(i + 1))
    return steps * batch / (time.perf_counter() - t0), float(np.mean(losses))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="SST-2 sentences per text model")
    ap.add_argument("--steps", type=int, default=30, help="timed SGD steps per path")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip", choices=("text", "training"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"bf16 supported: {pr.bf16_supported()}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; best of {args.rounds} interleaved rounds")
    if args.skip != "text":
        data = load_dataset("sst2", "train", n=args.n, seed=0)
        for model in ("minilm_l6", "mpnet_base"):
            n_tok = sub_tokens(model, data)
            auto = pr.resolve("auto", "cpu", model, "text")
            best, feats = {}, {}
            for _ in range(args.rounds):
                for p in ("fp32", "auto"):
                    seconds, feats[p] = text_rate(model, data, p)
                    best[p] = min(best.get(p, np.inf), seconds)
            err = max(np.linalg.norm(feats["auto"][k] - feats["fp32"][k])
                      / np.linalg.norm(feats["fp32"][k]) for k in feats["fp32"])
            print(f"{model}: {len(data)} sentences, {n_tok} sub-tokens; fp32 "
                  f"{n_tok / best['fp32']:7.0f} sub-tok/s, auto ({auto}) "
                  f"{n_tok / best['auto']:7.0f} sub-tok/s = {best['fp32'] / best['auto']:.2f}x; "
                  f"max layer rel. error {100 * err:.2f}%", flush=True)
    if args.skip != "training":
        paths = ("fp32", "channels-last") + (("bf16",) if pr.bf16_supported() else ())
        for arch, batch in ((Arch("small_resnet", width=16, resolution=32), 64),
                            (Arch("efficientnet_lite0", resolution=64), 32)):
            best, loss = {}, {}
            for _ in range(args.rounds):
                for path in paths:
                    rate, loss[path] = train_rate(arch, path, args.steps, batch)
                    best[path] = max(best.get(path, 0.0), rate)
            auto = pr.training_path("cpu", "auto", arch.name)
            print(f"{arch.name} {arch.resolution}px batch {batch} (auto = {auto}): " + ", ".join(
                f"{p} {best[p]:.0f} img/s (loss {loss[p]:.4f})" for p in paths)
                + f"; auto / fp32 {best[auto] / best['fp32']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
