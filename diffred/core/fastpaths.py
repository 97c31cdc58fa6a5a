"""The fast CPU paths themselves: batch norms folded into convolutions, channels-last layouts,
autocast contexts.  Which path a computation takes is decided elsewhere
(:mod:`diffred.core.precision`: the policy; :mod:`diffred.core.selftest`: whether a path is known good
on this machine); this module only builds them.

Inference paths (:data:`PATHS`): ``"fp32"`` (eager float32, NCHW), ``"fp32-fused"`` (BN
folded in float64, channels-last, float32), ``"bf16"`` (folded, channels-last, bf16 autocast),
``"cuda-fp16"`` (fp16 autocast on CUDA).  Training paths (:data:`TRAINING_PATHS`): ``"fp32"``,
``"channels-last"`` (float32), ``"bf16"`` (channels-last + bf16 autocast of forward and loss;
weights, gradients and SGD stay float32).
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

from diffred.core.errors import check_choice

PATHS = ("fp32", "fp32-fused", "bf16", "cuda-fp16")
TRAINING_PATHS = ("fp32", "channels-last", "bf16")


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


# --------------------------------------------------------------------------- inference
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
