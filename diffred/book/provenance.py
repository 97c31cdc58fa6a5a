"""What produced a chapter's numbers: commit, changed parameters, hardware, precision, library
versions, weights hashes and section wall times — as a dict (``provenance.json``) and as the
collapsible panel every chapter page shows (:class:`diffred.Chapter` calls these).

:func:`quiet` silences the known noise that would otherwise be rendered into the pages
(tqdm's ``IProgress`` warning, weight-loading progress bars, NumPy's non-writable-array warning).
"""
from __future__ import annotations

import functools
import html
import os
import platform
import subprocess
import warnings
from datetime import datetime, timezone
from importlib import metadata

from diffred.core import selftest
from diffred.core.paths import BOOK_DIR, PROJECT_DIR

LIBRARIES = ("torch", "timm", "transformers", "scikit-learn", "numpy", "diffred-book")
LOCK = BOOK_DIR / "requirements.lock"        # make install's exact environment (make lock)


def quiet() -> None:
    """Keep progress bars and known harmless warnings out of the chapter's outputs."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    warnings.filterwarnings("ignore", message=".*non-writable.*", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
    try:                                   # tqdm bars already bound to the default
        from tqdm import TqdmExperimentalWarning, TqdmWarning
        warnings.filterwarnings("ignore", category=TqdmWarning)
        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    except Exception:
        pass
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:                      # transformers missing or a different version
        pass


def git_commit(root=PROJECT_DIR) -> str:
    """Short hash of HEAD, with ``-dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else (head or "unknown")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str | None) -> dict:
    """CPU model and cores, torch threads, and the GPU's name when one is used."""
    import torch

    from diffred.core.device import default_device
    used = device or default_device()
    out = {"device": used, "cpu": _cpu_model(), "cores": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "isa": torch.backends.cpu.get_cpu_capability() + "".join(
               f", {k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
               if k in os.environ)}
    if used.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(used))
    return out


def precision(device: str) -> str:
    """The arithmetic the chapter's computations use on ``device`` under the precision setting
    (:func:`diffred.core.precision.setting`, the chapter's ``precision`` parameter)."""
    from diffred.core import precision as p
    setting = p.setting()
    if setting == "fp32":
        return "float32 throughout (precision 'fp32')"
    if device.startswith("cuda"):
        return (f"precision {setting!r}: float16 autocast for feature extraction, bf16 products "
                "in probes >= 512 features wide, float32 training")
    if not p.bf16_products(device):
        return (f"precision {setting!r}, no fast bf16 on this CPU: float32 (vision extraction "
                "with batch norms folded, channels-last; channels-last training)")
    if setting == "bf16":
        return ("precision 'bf16': bf16 autocast for extraction (vision: batch norms folded, "
                "channels-last) and training, bf16 products in probes; float32 stopping tests")
    return (f"precision {setting!r}: bf16 for text extraction ({', '.join(sorted(p.FAITHFUL_BF16))}),"
            f" probe products >= 512 features wide and {', '.join(sorted(p.BF16_TRAINING))} "
            "training; float32 elsewhere (vision extraction with batch norms folded)")


def versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def locked_versions(lock=LOCK) -> dict[str, str]:
    """``name -> version`` of the lock file's entries that apply to this interpreter and
    platform (their environment markers evaluated here)."""
    import re

    from packaging.markers import Marker
    from packaging.utils import canonicalize_name
    entry = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
    out = {}
    for line in lock.read_text().splitlines():
        m = entry.match(line.rstrip())
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate()):
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def lock_differences(lock=LOCK) -> dict[str, tuple]:
    """Packages whose installed version differs from the lock: ``name -> (locked, installed)``
    (None where absent); the installer's own tools and diffred itself are not locked."""
    from packaging.utils import canonicalize_name
    want = locked_versions(lock)
    have = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unlocked = {"pip", "setuptools", "wheel", "diffred-book"}
    names = (set(want) | set(have)) - unlocked
    return {n: (want.get(n), have.get(n)) for n in sorted(names) if want.get(n) != have.get(n)}


@functools.cache
def environment() -> str:
    """The lock file's SHA-256 (first 12) and whether this environment matches it (read once
    per process)."""
    import hashlib
    if not LOCK.exists():
        return "no lock file (not a checkout)"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    diff = lock_differences()
    state = "installed exactly" if not diff else f"{len(diff)} package(s) differ, e.g. " + \
        ", ".join(f"{n} {v[1] or 'absent'} (locked {v[0] or 'absent'})" for n, v in
                  list(diff.items())[:3])
    return f"requirements.lock {digest}: {state}"


def collect(chapter: str, changed: dict, device: str | None, weights: dict,
            sections: list, elapsed: float) -> dict:
    """The provenance dict of a chapter run."""
    hw = hardware(device)
    return {"chapter": chapter, "commit": git_commit(), "changed_parameters": dict(changed),
            "hardware": hw, "precision": precision(hw["device"]),
            "speed_paths": selftest.summary(), "versions": versions(),
            "environment": environment(),
            "weights": dict(weights),
            "sections": [{"section": n, "seconds": round(s, 1)} for n, s in sections],
            "wall_seconds": round(elapsed, 1),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def hardware_line(hw: dict) -> str:
    line = f"{hw['cpu']}, {hw['cores']} cores, {hw['torch_threads']} torch threads"
    if "isa" in hw:
        line += f" (ISA {hw['isa']})"
    return f"{hw['gpu']} (GPU); {line}" if "gpu" in hw else f"CPU: {line}"


def _notebook_links(chapter: str) -> str:
    return (f'<a class="diffred-download" href="../notebooks/{chapter}.ipynb" download>'
            f'executed notebook (.ipynb)</a> · '
            f'<a class="diffred-download" href="../notebooks/{chapter}.md" download>'
            f'MyST source (.md)</a>')


def panel_html(data: dict, final: bool) -> str:
    """The provenance panel: an admonition with the summary line and a collapsible table."""
    e = html.escape
    changed = ", ".join(f"{k} = {v!r}" for k, v in data["changed_parameters"].items()) \
        or "none (all defaults)"
    rows = [("commit", f"<code>{e(data['commit'])}</code>"),
            ("parameters changed", e(changed)),
            ("hardware", e(hardware_line(data["hardware"]))),
            ("precision", e(data["precision"])),
            ("speed paths checked here", e(data.get("speed_paths") or "none used")),
            ("versions", e(", ".join(f"{k} {v}" for k, v in data["versions"].items()))),
            ("environment", e(data.get("environment", "—"))),
            ("weights", "<br>".join(f"{e(m)}: <code>{e(str(h)[:16])}</code>"
                                    for m, h in data["weights"].items()) or "—"),
            ("section wall time", "<br>".join(f"{e(s['section'])}: {s['seconds']:.0f} s"
                                              for s in data["sections"])
             or "(filled in when the chapter finishes)"),
            ("total wall time", f"{data['wall_seconds']:.0f} s" + ("" if final else
                                                                  " so far")),
            ("files", _notebook_links(data["chapter"]))]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    hw = e(hardware_line(data["hardware"]))
    return (f'<div class="admonition note diffred-provenance">'
            f'<p class="admonition-title">Provenance of this page</p>'
            f'<p>commit <code>{e(data["commit"])}</code> · {hw} · '
            f'{len(data["changed_parameters"])} parameter(s) changed · '
            f'{_notebook_links(data["chapter"])}</p>'
            f'<details><summary>details (versions, weights, section times)</summary>'
            f'<table class="diffred-provenance-table">{body}</table></details></div>')
