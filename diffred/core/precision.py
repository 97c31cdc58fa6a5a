"""Numeric precision of forward (and training) passes: fp32, bf16 where it is faithful.

The policy ``precision="auto" | "fp32" | "bf16"``:

* ``"fp32"`` — full precision, exactly today's code path (NCHW, eager, float32);
* ``"bf16"`` — the bf16 path, wherever the CPU has native bf16 arithmetic
  (AVX512-BF16 or AMX-BF16; elsewhere it would be emulated and slower, so it is refused);
* ``"auto"`` — ``"bf16"`` where the CPU supports it *and* the model is in
  :data:`FAITHFUL_BF16` (measured to keep features faithful), else the fastest float32 path
  (``"fp32-fused"`` for vision on CPU, ``"fp32"`` for text).

Flags are not trusted alone: a fast path is taken only when its self-test passed on this
machine and no known-bad rule matches (:mod:`diffred.core.selftest`); otherwise the next
path down, ending at plain ``"fp32"``, with one line on stderr saying why.  What ``"auto"`` picks:

====================  ====================  ====================  ======================
CPU class             vision extraction     text extraction       training (ch4)
====================  ====================  ====================  ======================
AVX2 (laptops)        fp32-fused            fp32                  channels-last
AVX-512, no bf16      fp32-fused            fp32                  channels-last
AVX512-BF16 / AMX     fp32-fused            bf16 (MiniLM, MPNet)  bf16 (small_resnet),
                                                                  channels-last (lite0)
====================  ====================  ====================  ======================

each subject to its self-test; training a net with a stride-2 1x1 convolution of fewer than 8
input channels (oneDNN issue 6035) always takes ``"fp32"``.

Every call given ``precision=None`` uses the process :func:`setting` ("auto" unless
:func:`use` changed it; a chapter's prologue sets it from its ``precision`` parameter).
Features, training runs and cached result tables carry the path in their cache keys wherever
it is not plain fp32, so fp32 keys are the keys of before precision existed.

On CUDA the extractor keeps its fp16 autocast (``"auto"``/``"bf16"``); ``"fp32"`` turns it off.

The vision fast paths (:func:`diffred.core.fastpaths.prepare_vision`) work on a copy of the
model: each batch norm that only reads a convolution's output (found by an fx trace) is folded
into that convolution in float64, and the model and inputs go channels-last; ``"fp32-fused"`` stays
float32 (same features to ~1e-6), ``"bf16"`` adds bf16 autocast.  Features always leave the
model as float32.  Training (ch4) has its own paths (:func:`training_path`); the probes' mixed
precision (:mod:`diffred.core.probe`) uses :func:`bf16_products`.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

from diffred.core import selftest
from diffred.core.errors import check_choice
from diffred.core.fastpaths import (  # noqa: F401
    PATHS,
    TRAINING_PATHS,
    autocast,
    conv_bn_pairs,
    fold_batchnorms,
    prepare_input,
    prepare_model,
    prepare_vision,
    training_context,
)

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
    """Whether bfloat16 matrix products are fast and right on ``device``: a CUDA device that
    supports bf16, or a CPU where :func:`bf16_supported` and the ``matmul:bf16`` self-test
    passed (the probes' mixed-precision test)."""
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.is_bf16_supported()
    return bf16_supported() and verified("matmul:bf16")


def verified(check: str) -> bool:
    """Whether the fast path ``check`` passed its self-test on this machine
    (:func:`diffred.core.selftest.passed`; recorded once per machine in the cache)."""
    return selftest.passed(check)


def _refuse(check: str) -> None:
    """An explicitly requested path whose self-test failed: a one-line error."""
    raise ValueError(f"precision 'bf16' failed its self-test on this machine ({check}: "
                     f"{selftest.verdict(check)['reason']}); valid choices here: 'auto', 'fp32'")


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
    """What the setting adds to a cached result's key (:func:`diffred.core.cache.cached_tables`):
    nothing where every computation runs as before precision existed (setting ``"fp32"``, or
    no fast bf16 products on this machine), else ``{"precision": setting}``."""
    from diffred.core.device import default_device
    if setting() == "fp32" or not bf16_products(default_device()):
        return {}
    return {"precision": setting()}


# --------------------------------------------------------------------------- policy
#: Models measured to keep their features faithful under their bf16 path on CPU (relative
#: feature error <= 1% and ImageNet top-1 agreement >= 99.5% for vision; hidden-state error
#: <= 1% at every layer for text).  Measured on an AVX512-BF16 EPYC, torch 2.14: MiniLM
#: <= 0.63%, MPNet <= 0.76% (1.8x / 1.9x sub-tokens/s); efficientnet_lite0 fails (naive
#: autocast 6.7% / 91% top-1 agreement on CIFAR-10 at 160 px; best partial-bf16 mix 1.5%,
#: and slower than "fp32-fused"), so vision stays float32 (see benchmarks/extract.py).
FAITHFUL_BF16: frozenset = frozenset({"minilm_l6", "mpnet_base"})


def resolve(precision: str | None, device: str, model: str, kind: str = "vision") -> str:
    """The computation path that ``precision`` means for ``model`` on ``device``.

    Returns one of :data:`PATHS`: ``"fp32"`` (today's eager float32 path, bit for bit),
    ``"fp32-fused"`` (vision on CPU: BN folded into the convs, channels-last, still float32 —
    same numbers to ~1e-6), ``"bf16"`` (BN folded, channels-last, bf16 autocast) or
    ``"cuda-fp16"`` (fp16 autocast, as before).  ``"bf16"`` on a CPU without native bf16 is
    an error, and so is one whose self-test failed; ``"auto"`` picks bf16 only where
    :func:`bf16_supported`, the model is in :data:`FAITHFUL_BF16` and the ``<kind>:bf16``
    self-test passed, else the fastest float32 path whose self-test passed (``"fp32-fused"``
    for vision), else ``"fp32"``; None: the :func:`setting`.
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
    if precision == "bf16":
        if not verified(f"{kind}:bf16"):
            _refuse(f"{kind}:bf16")
        return "bf16"
    if bf16_supported() and model in FAITHFUL_BF16 and verified(f"{kind}:bf16"):
        return "bf16"
    return "fp32-fused" if kind == "vision" and verified("vision:fp32-fused") else "fp32"


def cache_tag(path: str) -> dict:
    """What the path adds to a feature cache key: nothing for ``"fp32"`` (keys stay as they
    were before precision existed), ``{"precision": path}`` otherwise."""
    check_choice("precision path", path, PATHS)
    return {} if path == "fp32" else {"precision": path}


# --------------------------------------------------------------------------- training
#: Architectures (``diffred.studies.transfer.method.Arch.name``) whose CPU training "auto" runs in bf16:
#: measured (EPYC AVX512-BF16, 2 cores, 300 SGD steps on CIFAR-10) SmallResNet w16 32 px
#: batch 64: fp32 1005, channels-last 1460, bf16 2050 img/s, loss curve as close to fp32's
#: as channels-last fp32's is.  efficientnet_lite0 (64 px, batch 32): fp32 127,
#: channels-last 231, bf16 147 img/s, so it trains channels-last in fp32.
BF16_TRAINING: frozenset = frozenset({"small_resnet"})


_WARNED: set = set()


def training_path(device, precision: str | None = None, arch: str | None = None,
                  model=None) -> str:
    """The training path that ``precision`` means on ``device`` for architecture ``arch``
    (the network ``model``, when given, is checked against the known-bad rules).

    "auto": bf16 for :data:`BF16_TRAINING` where the CPU has bf16 and the ``train:bf16``
    self-test passed, else channels-last where ``train:channels-last`` passed, else "fp32"; a
    network a :data:`diffred.core.selftest.KNOWN_BAD` rule matches trains in "fp32" (one line on
    stderr says why).  CUDA: always "fp32", the training loop is unchanged there.  An explicit
    "bf16" that cannot be honoured is a one-line error.  None: the :func:`setting`."""
    precision = chosen(precision)
    if precision == "fp32" or str(device).startswith("cuda"):
        return "fp32"
    if precision == "bf16" and not bf16_supported():
        raise ValueError("precision 'bf16' needs a CPU with native bf16 (avx512_bf16 or "
                         "amx_bf16); valid choices here: 'auto', 'fp32'")
    want = "bf16" if precision == "bf16" or (bf16_supported() and arch in BF16_TRAINING) \
        else "channels-last"
    bad = selftest.known_bad(model, want) if model is not None else None
    if bad:
        if precision == "bf16":
            raise ValueError(f"precision 'bf16' cannot train this network: {bad}; valid "
                             f"choices here: 'auto', 'fp32'")
        if bad not in _WARNED:
            _WARNED.add(bad)
            print(f"diffred: training in fp32, not {want}: {bad}", file=sys.stderr, flush=True)
        return "fp32"
    checks = ["train:channels-last"] + (["train:bf16"] if want == "bf16" else [])
    failed = next((c for c in checks if not verified(c)), None)
    if failed is None:
        return want
    if precision == "bf16":
        _refuse(failed)
    return "channels-last" if failed == "train:bf16" else "fp32"


