"""Numeric precision of forward (and training) passes: fp32, bf16 where it is faithful.

The policy ``precision="auto" | "fp32" | "bf16"``:

* ``"fp32"`` — full precision, exactly today's code path (NCHW, eager, float32);
* ``"bf16"`` — the bf16 path, wherever the CPU has native bf16 arithmetic
  (AVX512-BF16 or AMX-BF16; elsewhere it would be emulated and slower, so it is refused);
* ``"auto"`` — ``"bf16"`` where the CPU supports it *and* the model is in
  :data:`FAITHFUL_BF16` (measured to keep features faithful), else the fastest float32 path
  (``"fp32-fused"`` for vision on CPU, ``"fp32"`` for text).

Every call given ``precision=None`` uses the process :func:`setting` ("auto" unless
:func:`use` changed it; a chapter's prologue sets it from its ``precision`` parameter).
Features, training runs and cached result tables carry the path in their cache keys wherever
it is not plain fp32, so fp32 keys are the keys of before precision existed.

On CUDA the extractor keeps its fp16 autocast (``"auto"``/``"bf16"``); ``"fp32"`` turns it off.

The vision fast paths (:func:`prepare_vision`) work on a copy of the model: each batch norm
that only reads a convolution's output (found by an fx trace) is folded into that
convolution in float64, and the model and inputs go channels-last; ``"fp32-fused"`` stays
float32 (same features to ~1e-6), ``"bf16"`` adds bf16 autocast.  Features always leave the
model as float32.  Training (ch4) has its own paths (:func:`training_path`); the probes' mixed
precision (:mod:`diffred.probe`) uses :func:`bf16_products`.
"""
from __future__ import annotations

import copy
import re
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

from .errors import check_choice

PRECISIONS = ("auto", "fp32", "bf16")


# --------------------------------------------------------------------------- detection
def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


@lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX-BF16).

    Needs all of: oneDNN bf16 support in this torch build, a torch CPU capability of AVX512
    or better, and the ``avx512_bf16`` or ``amx_bf16`` CPU flag (oneDNN also "supports" bf16
    on plain AVX512 by emulation, which is slower than fp32).
    """
    try:
        import torch
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
            return False
    except (AttributeError, RuntimeError):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def bf16_products(device) -> bool:
    """Whether bfloat16 matrix products are fast on ``device``: a CUDA device that supports
    bf16, or a CPU where :func:`bf16_supported` (the probes' mixed-precision test)."""
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.is_bf16_supported()
    return bf16_supported()


def check_precision(precision: str) -> str:
    """Validate a precision name (one-line error naming the valid choices)."""
    check_choice("precision", precision, PRECISIONS)
    return precision


# --------------------------------------------------------------------------- the setting
_SETTING = ["auto"]


def setting() -> str:
    """The precision of every call given ``precision=None`` (features, probes, training):
    ``"auto"`` unless :func:`use` set another — as a chapter's ``precision`` parameter does
    (:class:`diffred.Chapter`), so its verbs need no extra argument."""
    return _SETTING[0]


def use(precision: str) -> None:
    """Set :func:`setting` (checked: a one-line error naming the valid choices)."""
    _SETTING[0] = check_precision(precision)


def chosen(precision: str | None) -> str:
    """``precision`` checked, or the :func:`setting` if None."""
    return setting() if precision is None else check_precision(precision)


def result_tag() -> dict:
    """What the setting adds to a cached result's key (:func:`diffred.cache.cached_tables`):
    nothing where every computation runs as before precision existed (setting ``"fp32"``, or
    no fast bf16 products on this machine), else ``{"precision": setting}``."""
    from .device import default_device
    if setting() == "fp32" or not bf16_products(default_device()):
        return {}
    return {"precision": setting()}


# --------------------------------------------------------------------------- model surgery
def conv_bn_pairs(model) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the BN reads the conv's output and nothing
    else does — found by an fx trace with convs and BNs as leaves ([] if it cannot trace)."""
    import torch.fx as fx
    import torch.nn as nn

    class Tracer(fx.Tracer):
        def is_leaf_module(self, module, name):
            return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or \
                super().is_leaf_module(module, name)

    try:
        graph = Tracer().trace(model)
    except Exception:   # untraceable (data-dependent control flow): fold nothing
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        src = node.args[0] if node.op == "call_module" and node.args else None
        if isinstance(modules.get(node.target), nn.BatchNorm2d) and \
                isinstance(src, fx.Node) and src.op == "call_module" and \
                isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1:
            pairs.append((src.target, node.target))
    return pairs


def fold_batchnorms(model, keep=()):
    """A copy of ``model`` (eval) with each BatchNorm folded into the conv that feeds it.

    Pairs come from :func:`conv_bn_pairs` (a conv output read by anything besides its BN is
    not folded): ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``,
    in float64; the BN becomes its activation (timm's ``BatchNormAct2d``: ``drop`` then
    ``act``) or ``Identity``.  Convs or BNs named in ``keep`` (layers whose own output is
    read) are left alone.
    """
    import torch
    import torch.nn as nn
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    for conv_name, bn_name in conv_bn_pairs(model):
        conv, bn = modules[conv_name], modules[bn_name]
        if conv_name in keep or bn_name in keep or bn.running_var is None or \
                bn.num_features != conv.out_channels:
            continue
        with torch.no_grad():
            scale = (bn.weight.double() if bn.affine else 1.0) / \
                torch.sqrt(bn.running_var.double() + bn.eps)
            shift = (bn.bias.double() if bn.affine else 0.0) - bn.running_mean.double() * scale
            bias = conv.bias.double() if conv.bias is not None else 0.0
            conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).float())
            conv.bias = nn.Parameter((bias * scale + shift).float(), requires_grad=False)
        act = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None))
               if m is not None and not isinstance(m, nn.Identity)]
        parent, _, attr = bn_name.rpartition(".")
        setattr(modules[parent] if parent else model, attr,
                nn.Sequential(*act) if act else nn.Identity())
    return model


# --------------------------------------------------------------------------- policy
#: Models measured to keep their features faithful under their bf16 path on CPU (relative
#: feature error <= 1% and ImageNet top-1 agreement >= 99.5% for vision; hidden-state error
#: <= 1% at every layer for text).  Measured on an AVX512-BF16 EPYC, torch 2.14: MiniLM
#: <= 0.63%, MPNet <= 0.76% (1.8x / 1.9x sub-tokens/s); efficientnet_lite0 fails (naive
#: autocast 6.7% / 91% top-1 agreement on CIFAR-10 at 160 px; best partial-bf16 mix 1.5%,
#: and slower than "fp32-fused"), so vision stays float32 (see benchmarks/extract.py).
FAITHFUL_BF16: frozenset = frozenset({"minilm_l6", "mpnet_base"})

PATHS = ("fp32", "fp32-fused", "bf16", "cuda-fp16")


def resolve(precision: str | None, device: str, model: str, kind: str = "vision") -> str:
    """The computation path that ``precision`` means for ``model`` on ``device``.

    Returns one of :data:`PATHS`: ``"fp32"`` (today's eager float32 path, bit for bit),
    ``"fp32-fused"`` (vision on CPU: BN folded into the convs, channels-last, still float32 —
    same numbers to ~1e-6), ``"bf16"`` (BN folded, channels-last, bf16 autocast) or
    ``"cuda-fp16"`` (fp16 autocast, as before).  ``"bf16"`` on a CPU without native bf16 is
    an error; ``"auto"`` picks bf16 only where :func:`bf16_supported` and the model is in
    :data:`FAITHFUL_BF16`, else the fastest float32 path; None: the :func:`setting`.
    """
    precision = chosen(precision)
    if precision == "fp32":
        return "fp32"
    if str(device).startswith("cuda"):
        return "cuda-fp16"
    if precision == "bf16" and not bf16_supported():
        raise ValueError("precision 'bf16' needs a CPU with native bf16 (avx512_bf16 or "
                         "amx_bf16) and a torch build with oneDNN bf16; valid choices here: "
                         "'auto', 'fp32'")
    if precision == "bf16" or (bf16_supported() and model in FAITHFUL_BF16):
        return "bf16"
    return "fp32-fused" if kind == "vision" else "fp32"


def cache_tag(path: str) -> dict:
    """What the path adds to a feature cache key: nothing for ``"fp32"`` (keys stay as they
    were before precision existed), ``{"precision": path}`` otherwise."""
    check_choice("precision path", path, PATHS)
    return {} if path == "fp32" else {"precision": path}


def autocast(path: str):
    """The autocast context of a path (a no-op for the float32 paths)."""
    import torch
    if path == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if path == "cuda-fp16":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


class VisionPath:
    """A vision model prepared for one path: ``module`` (a copy unless the path is
    ``"fp32"``/``"cuda-fp16"``, which use the model itself), ``input(x)`` to lay out a batch,
    ``context()`` to enter around the forward pass.  Outputs may be bf16: cast with ``.float()``.
    """

    def __init__(self, module, path: str, keep=()):
        import torch
        check_choice("precision path", path, PATHS)
        self.path = path
        self.channels_last = path in ("fp32-fused", "bf16")
        if self.channels_last:
            module = fold_batchnorms(module, keep).to(memory_format=torch.channels_last)
        self.module = module

    def input(self, x):
        import torch
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def context(self):
        return autocast(self.path)


def prepare_vision(module, path: str, keep=()) -> VisionPath:
    """See :class:`VisionPath`; ``keep``: module names whose outputs are read (not folded)."""
    return VisionPath(module, path, keep)


# --------------------------------------------------------------------------- training
#: Training paths: "fp32" (as before), "channels-last" (fp32), "bf16" (channels-last +
#: bf16 autocast of forward and loss; weights, gradients and SGD stay float32).
TRAINING_PATHS = ("fp32", "channels-last", "bf16")
#: Architectures (``diffred.transfer.Arch.name``) whose CPU training "auto" runs in bf16:
#: measured (EPYC AVX512-BF16, 2 cores, 300 SGD steps on CIFAR-10) SmallResNet w16 32 px
#: batch 64: fp32 1005, channels-last 1460, bf16 2050 img/s, loss curve as close to fp32's
#: as channels-last fp32's is.  efficientnet_lite0 (64 px, batch 32): fp32 127,
#: channels-last 231, bf16 147 img/s, so it trains channels-last in fp32.
BF16_TRAINING: frozenset = frozenset({"small_resnet"})


def training_path(device, precision: str | None = None, arch: str | None = None) -> str:
    """The training path that ``precision`` means on ``device`` for architecture ``arch``
    ("auto": bf16 for :data:`BF16_TRAINING` where the CPU has bf16, else channels-last;
    CUDA: always "fp32", the training loop is unchanged there; None: the :func:`setting`)."""
    precision = chosen(precision)
    if precision == "fp32" or str(device).startswith("cuda"):
        return "fp32"
    if precision == "bf16" and not bf16_supported():
        raise ValueError("precision 'bf16' needs a CPU with native bf16 (avx512_bf16 or "
                         "amx_bf16); valid choices here: 'auto', 'fp32'")
    if precision == "bf16" or (bf16_supported() and arch in BF16_TRAINING):
        return "bf16"
    return "channels-last"


def prepare_model(model, path: str):
    """Lay a model out for a training path, in place (channels-last unless "fp32")."""
    import torch
    check_choice("training path", path, TRAINING_PATHS)
    return model if path == "fp32" else model.to(memory_format=torch.channels_last)


def training_context(path: str):
    """Context for the forward pass and loss of one training step (backward outside it)."""
    import torch
    check_choice("training path", path, TRAINING_PATHS)
    return torch.autocast("cpu", dtype=torch.bfloat16) if path == "bf16" else nullcontext()


def prepare_input(x, path: str):
    """A batch (B, C, H, W) laid out for a training path."""
    import torch
    return x if path == "fp32" else x.contiguous(memory_format=torch.channels_last)
