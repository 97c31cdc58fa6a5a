"""Tidy result tables with provenance, written atomically beside the book's figures."""
from __future__ import annotations

import io
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import __version__
from .cache import atomic_write_bytes
from .paths import results_dir


def provenance(**extra) -> dict:
    """Code version, library versions, device and any chapter parameters (``extra``)."""
    import torch
    return {"diffred": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def save_table(df: pd.DataFrame, name: str, chapter: str, **params) -> Path:
    """Write ``df`` to ``<results>/<chapter>/<name>.csv`` and its provenance to ``<name>.json``.

    Rows should already carry per-row provenance columns (model, weights hash, dataset,
    subset, seed); ``params`` records the chapter parameters that produced the table.
    """
    folder = results_dir() / chapter
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    path = folder / f"{name}.csv"
    atomic_write_bytes(path, buf.getvalue().encode())
    atomic_write_bytes(folder / f"{name}.json",
                       json.dumps(provenance(table=name, rows=len(df), **params), indent=1,
                                  default=str).encode())
    return path
