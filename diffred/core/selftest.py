"""Speed paths are used only where they are known good on this machine.

diffred's fast CPU paths (:mod:`diffred.core.precision`: channels-last and BN-folded float32,
bf16 autocast, bf16 probe products) were measured on a few CPUs, and CPU flags say only what
a CPU *can* do, not that this torch / oneDNN build does it right.  oneDNN issue 6035 is the
case in point: its AVX2 1x1 stride-2 backward-weights kernel with channels-last input and fewer
than 8 input channels hangs, segfaults or returns wrong weight gradients (torch 2.14.1 ships
it).  So a path is taken only when

1. no rule of :data:`KNOWN_BAD` matches the network (:func:`known_bad`), and
2. its **self-test** passed on this machine (:func:`passed`): a tiny network's forward (and
   backward, for training paths) on the path, repeated, with one thread and with the caller's
   thread count, against plain float32 — run in a subprocess with a time limit, so a hang or
   a crash costs the test and not the caller.  The verdict is recorded once per (CPU, torch
   build, oneDNN / ATen ISA settings, threads) in ``<cache>/selftest/`` and consulted from
   then on.

A path that fails either falls back to plain float32 (slower, never hung or wrong), with one
line on stderr saying why.  ``DIFFRED_SELFTEST_TIMEOUT`` (seconds, default 180) bounds a test.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from functools import cache, lru_cache
from pathlib import Path

from diffred.core.errors import check_choice
from diffred.core.paths import atomic_write_bytes, cache_dir

#: Checks, by name: what each compares, and its tolerance on the relative error (norm of the
#: difference over that of the float32 reference).  Float32 reorderings differ by ~1e-5 per
#: tensor; a broken kernel by 0.1 and more (issue 6035: 0.14-0.2 of a weight gradient).  bf16
#: gradients of a random net differ from float32 by ~0.1-0.3 per tensor by rounding alone, so
#: "train:bf16" compares the whole gradient vector (~0.06 measured) and catches gross failures
#: (hangs, crashes, NaN, wrong signs); the layout kernels it shares with channels-last float32
#: are checked tightly by "train:channels-last", which the bf16 path also requires.
CHECKS = {
    "train:channels-last": ("a convnet's loss and weight gradients, channels-last", 1e-3),
    "train:bf16": ("a convnet's loss and whole gradient, channels-last + bf16 autocast", 0.15),
    "vision:fp32-fused": ("a convnet's eval output, BN folded and channels-last", 1e-4),
    "vision:bf16": ("a convnet's eval output, BN folded, channels-last + bf16 autocast", 0.1),
    "text:bf16": ("a transformer layer's output under bf16 autocast", 0.05),
    "matmul:bf16": ("matrix products with bf16 operands and float32 accumulation", 0.02),
}
REPEATS = 3          # a kernel that hangs or errs one run in three is caught 70% of the time


def timeout() -> float:
    """Seconds one self-test may take (``DIFFRED_SELFTEST_TIMEOUT``, default 180)."""
    return float(os.environ.get("DIFFRED_SELFTEST_TIMEOUT", "180"))


# --------------------------------------------------------------------------- known-bad rules
def _onednn_6035(model) -> str | None:
    """A 1x1 convolution with stride > 1 and fewer than 8 input channels (per group)."""
    import torch.nn as nn
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and \
                tuple(m.stride) != (1, 1) and m.in_channels // m.groups < 8:
            return (f"oneDNN issue 6035: conv {name!r} (1x1, stride {m.stride[0]}, "
                    f"{m.in_channels // m.groups} input channels) gets wrong or hung weight "
                    f"gradients channels-last")
    return None


#: (training paths it rules out, rule): a rule returns why a network must not take the path.
#: Applied on every CPU: which oneDNN ISA a kernel dispatches to is not knowable from here
#: (``ONEDNN_MAX_CPU_ISA``, hybrid CPUs), and the cost is only a slower run of tiny nets.
KNOWN_BAD = ((("channels-last", "bf16"), _onednn_6035),)


def known_bad(model, path: str) -> str | None:
    """Why training ``model`` on ``path`` is known to be wrong (None: no known problem)."""
    for paths, rule in KNOWN_BAD:
        if path in paths:
            why = rule(model)
            if why:
                _APPLIED.add(why)
                return why
    return None


# --------------------------------------------------------------------------- the machine
def _cpu() -> dict:
    name, flags = platform.processor(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name.strip():
                name = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = value.strip()
    except OSError:
        pass
    return {"cpu": name or platform.machine(),
            "flags": hashlib.sha256(flags.encode()).hexdigest()[:16]}


@lru_cache(maxsize=1)
def machine() -> dict:
    """What a verdict depends on: CPU, torch build, ISA settings and threads."""
    import torch
    env = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                                      "ATEN_CPU_CAPABILITY", "ONEDNN_DEFAULT_FPMATH_MODE")
           if k in os.environ}
    return {**_cpu(), "torch": torch.__version__,
            "build": hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:16],
            "capability": torch.backends.cpu.get_cpu_capability(), "env": env,
            "threads": torch.get_num_threads(),
            "test": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]}


def _record(check: str) -> Path:
    key = hashlib.sha256(json.dumps([check, machine()], sort_keys=True).encode()).hexdigest()
    return cache_dir() / "selftest" / f"{check.replace(':', '-')}-{key[:32]}.json"


# --------------------------------------------------------------------------- verdicts
_SAID: set = set()


def verdict(check: str) -> dict:
    """The verdict of ``check`` on this machine: read from ``<cache>/selftest/`` if recorded,
    else run (:func:`run`) and recorded; once per process.  ``{"ok", "reason", ...}``."""
    check_choice("self-test", check, tuple(CHECKS))
    return _verdict(check)


@cache
def _verdict(check: str) -> dict:
    record = _record(check)
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        pass
    result = {**run(check), "check": check, "machine": machine()}
    if result.pop("record", True):    # an environment that cannot import is asked again
        atomic_write_bytes(record, json.dumps(result, indent=1).encode())
    return result


def summary() -> str:
    """The self-tests this process consulted and the known-bad rules it applied, one line
    (for the provenance panel): e.g. ``"train:channels-last ok; vision:fp32-fused ok"``."""
    checks = [f"{c} {'ok' if ok else 'failed: ' + why}" for c, (ok, why) in
              sorted(_CONSULTED.items())]
    return "; ".join(checks + [f"known bad: {why}" for why in sorted(_APPLIED)])


_CONSULTED: dict = {}
_APPLIED: set = set()


def passed(check: str) -> bool:
    """Whether ``check`` passed on this machine; the first failure says why on stderr."""
    v = verdict(check)
    _CONSULTED[check] = (bool(v["ok"]), v["reason"])
    if not v["ok"] and check not in _SAID:
        _SAID.add(check)
        print(f"diffred: speed path {check} not used on this machine ({v['reason']}): "
              f"float32 instead", file=sys.stderr, flush=True)
    return bool(v["ok"])


def run(check: str, target: str | None = None, limit: float | None = None) -> dict:
    """Run one self-test now, in a subprocess with a time limit; ``target`` (``module:function``,
    default this module's test for ``check``) returns the worst relative error over the
    compared tensors.  ``{"ok", "reason", "error", "seconds"}``."""
    import torch
    limit = timeout() if limit is None else limit
    target = target or f"{__name__}:_test_{check.replace(':', '_').replace('-', '_')}"
    tolerance = CHECKS[check][1] if check in CHECKS else float(check.rpartition("@")[2] or 0)
    # one thread first (a kernel that writes past its buffer corrupts the heap there and
    # aborts, where two racing threads may happen to get it right), then the caller's count
    code = (f"import importlib, torch; m, f = {target!r}.split(':'); "
            f"test = getattr(importlib.import_module(m), f); errors = []\n"
            f"for n in sorted({{1, {torch.get_num_threads()}}}):\n"
            f"    torch.set_num_threads(n); errors.append(float(test()))\n"
            f"print(repr(max(errors)))")
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=limit)    # the caller's environment, ISA caps included
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"no answer in {limit:g} s (hung)", "error": None,
                "seconds": limit}
    seconds = round(time.perf_counter() - t0, 2)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        how = (f"killed by signal {-out.returncode}" if out.returncode < 0 else
               f"exit {out.returncode}: {last}")
        # a test that could not even import says nothing about the kernels: not recorded
        broken = last.startswith(("ModuleNotFoundError", "ImportError"))
        return {"ok": False, "reason": f"crashed ({how})", "error": None, "seconds": seconds,
                **({"record": False} if broken else {})}
    error = float(out.stdout.strip().splitlines()[-1])
    ok = error <= tolerance          # nan fails too
    return {"ok": ok, "error": error, "seconds": seconds,
            "reason": f"relative error {error:.2g} {'<=' if ok else '>'} {tolerance:g}"}


# --------------------------------------------------------------------------- the tests
# Each runs in the subprocess and returns the worst relative error of REPEATS runs.
def _rel(a, b) -> float:
    import torch
    return float(torch.linalg.vector_norm((a.float() - b.float()).double()) /
                 torch.linalg.vector_norm(b.double()).clamp_min(1e-30))


def _convnet(n_classes: int = 10):
    """The layer kinds of the book's convnets (small_resnet, EfficientNet-Lite), at sizes the
    :data:`KNOWN_BAD` rules allow: 3x3 stride 1 and 2, depthwise 3x3 / 5x5, 1x1 stride 1 and
    2 (8 and 16 input channels), batch norms, ReLU6, residual adds, pooling, a linear head."""
    import torch.nn as nn

    def cbr(i, o, k, s=1, g=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU6())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = cbr(3, 8, 3, 2)
            self.block = nn.Sequential(cbr(8, 8, 3, 1, 8), cbr(8, 16, 1))
            self.down = nn.Sequential(cbr(16, 16, 5, 2, 16), cbr(16, 32, 1))
            self.short = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
            self.down8 = nn.Conv2d(8, 32, 1, 2, bias=False)
            self.mix = cbr(32, 32, 3)
            self.head = nn.Linear(32, n_classes)

        def forward(self, x):
            stem = self.stem(x)
            x = self.block(stem)
            x = self.down(x) + self.short(x) + self.down8(stem)
            return self.head(self.mix(x).mean((2, 3)))

    return Net()


def _train_step(path: str, per_tensor: bool = True) -> float:
    import copy
    from contextlib import nullcontext

    import torch
    import torch.nn.functional as F

    from diffred.core.fastpaths import prepare_input, prepare_model, training_context
    worst = 0.0
    for seed in range(REPEATS):
        torch.manual_seed(seed)
        ref = _convnet().train()
        net = prepare_model(copy.deepcopy(ref), path)
        x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
        losses = []
        for model, inp, ctx in ((ref, x, nullcontext()),
                                (net, prepare_input(x, path), training_context(path))):
            with ctx:
                loss = F.cross_entropy(model(inp), y)
            loss.backward()
            losses.append(loss.detach())
        pairs = [(p.grad, q.grad) for p, q in zip(net.parameters(), ref.parameters())]
        if not per_tensor:
            pairs = [(torch.cat([a.flatten() for a, _ in pairs]),
                      torch.cat([b.flatten() for _, b in pairs]))]
        worst = max(worst, _rel(losses[1], losses[0]), *(_rel(a, b) for a, b in pairs))
    return worst


def _test_train_channels_last() -> float:
    return _train_step("channels-last")


def _test_train_bf16() -> float:
    return _train_step("bf16", per_tensor=False)


def _vision_eval(path: str) -> float:
    import torch

    from diffred.core.fastpaths import prepare_vision
    worst = 0.0
    for seed in range(REPEATS):
        torch.manual_seed(seed)
        ref = _convnet().train()
        with torch.no_grad():                 # non-trivial running statistics to fold
            for _ in range(3):
                ref(torch.randn(16, 3, 32, 32) * 2 + 0.5)
        ref.eval()
        fast = prepare_vision(ref, path)
        x = torch.randn(16, 3, 32, 32)
        with torch.no_grad():
            want = ref(x)
            with fast.context():
                got = fast.module(fast.input(x)).float()
        worst = max(worst, _rel(got, want))
    return worst


def _test_vision_fp32_fused() -> float:
    return _vision_eval("fp32-fused")


def _test_vision_bf16() -> float:
    return _vision_eval("bf16")


def _test_text_bf16() -> float:
    import torch
    import torch.nn as nn
    worst = 0.0
    for seed in range(REPEATS):
        torch.manual_seed(seed)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True).eval()
        x = torch.randn(4, 24, 64)
        with torch.no_grad():
            want = layer(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = layer(x).float()
        worst = max(worst, _rel(got, want))
    return worst


def _test_matmul_bf16() -> float:
    import torch
    worst = 0.0
    for seed in range(REPEATS):
        torch.manual_seed(seed)
        a, b = torch.randn(256, 384), torch.randn(384, 96)
        got = torch.mm(a.bfloat16(), b.bfloat16()).float()
        want = torch.mm(a.bfloat16().float(), b.bfloat16().float())  # same operands, fp32
        worst = max(worst, _rel(got, want))
    return worst
