"""Where diffred looks for data and keeps its caches and results.

* ``DIFFRED_DATA``  – local data mirror (layout of ``../shared/data/README.md``).
  Default: ``<project>/../shared/data`` when that folder exists, else
  :func:`default_data_dir` (``<project>/data/mirror``, where ``diffred data fetch`` puts files).
* ``DIFFRED_CACHE`` – feature / checkpoint cache. Default: ``<project>/data/cache``
  inside a checkout, else ``~/.cache/diffred``.
* ``DIFFRED_RESULTS`` – tidy result tables. Default: ``<project>/data/results``.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]       # diffred/
PROJECT_DIR = PACKAGE_DIR.parent
IN_CHECKOUT = (PROJECT_DIR / "_config.yml").exists()
#: the book's sources (``_config.yml``, ``_toc.yml``, ``intro.md``, ``chapters/``): the checkout,
#: or the copy a wheel ships in ``diffred/_book/`` (``setup.py``), so ``diffred run`` works
#: after ``pip install``
BOOK_DIR = PROJECT_DIR if IN_CHECKOUT else PACKAGE_DIR / "_book"


def default_data_dir() -> Path:
    """Where ``diffred data fetch`` puts datasets when ``DIFFRED_DATA`` is not set:
    ``<project>/data/mirror`` inside a checkout, else ``~/.cache/diffred/data``."""
    if IN_CHECKOUT:
        return PROJECT_DIR / "data" / "mirror"
    return Path.home() / ".cache" / "diffred" / "data"


def data_dirs() -> list[Path]:
    """Candidate local data folders, in the order they are searched."""
    dirs = []
    if os.environ.get("DIFFRED_DATA"):
        dirs.append(Path(os.environ["DIFFRED_DATA"]).expanduser())
    dirs.append(PROJECT_DIR.parent / "shared" / "data")
    dirs.append(default_data_dir())
    dirs.append(PROJECT_DIR / "data")
    return dirs


def cache_dir() -> Path:
    env = os.environ.get("DIFFRED_CACHE")
    path = Path(env).expanduser() if env else (
        PROJECT_DIR / "data" / "cache" if IN_CHECKOUT else Path.home() / ".cache" / "diffred")
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    env = os.environ.get("DIFFRED_RESULTS")
    path = Path(env).expanduser() if env else (
        PROJECT_DIR / "data" / "results" if IN_CHECKOUT else Path.cwd() / "diffred-results")
    path.mkdir(parents=True, exist_ok=True)
    return path


HOST = re.sub(r"[^\w.\-]", "_", socket.gethostname()) or "host"


def writer_tag() -> str:
    """``<host>@<pid>``: who writes a temporary file or folder (the host first: a cache may be
    shared by the machines of a cluster, where a PID means nothing)."""
    return f"{HOST}@{os.getpid()}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file (``.<name>.<pid>-*.tmp``) and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
