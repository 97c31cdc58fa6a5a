"""Content-addressed, atomic on-disk store for arrays and small objects.

An entry is a folder ``<cache>/<kind>/<key[:2]>/<key>/`` holding ``.npy`` arrays and a
``manifest.json`` written last, which records each file's size and SHA-256.  An entry is
valid only if its manifest exists and every file matches its recorded size (and, with
``verify=True``, its hash).  Entries are written to a temporary folder and renamed into
place, so a crash never leaves a half-written entry; invalid entries are removed and
recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .paths import cache_dir


def hash_key(spec: Any) -> str:
    """SHA-256 (hex, 32 chars) of a JSON-serialisable description."""
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArrayStore:
    """A cache of named-array bundles keyed by a content hash.

    >>> store = ArrayStore("features")
    >>> arrays, meta = store.get_or_compute(spec, lambda: ({"X": X, "y": y}, {"n": len(y)}))
    """

    def __init__(self, kind: str, root: Path | None = None):
        self.root = Path(root or cache_dir()) / kind

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str, mmap: bool = False, verify: bool = False
             ) -> tuple[dict[str, np.ndarray], dict] | None:
        """Return ``(arrays, meta)`` or ``None`` when missing; drops invalid entries."""
        folder = self.path(key)
        manifest = folder / "manifest.json"
        if not manifest.exists():
            return None
        try:
            info = json.loads(manifest.read_text())
            arrays = {}
            for name, rec in info["files"].items():
                file = folder / f"{name}.npy"
                if file.stat().st_size != rec["size"]:
                    raise ValueError(f"{file} has {file.stat().st_size} bytes, expected {rec['size']}")
                if verify and file_sha256(file) != rec["sha256"]:
                    raise ValueError(f"{file} checksum mismatch")
                arrays[name] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            return arrays, info.get("meta", {})
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            self.remove(key)
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
        with self.writer(key, meta) as w:
            for name, arr in arrays.items():
                w.put(name, arr)

    def writer(self, key: str, meta: dict | None = None) -> "EntryWriter":
        """Stream arrays into a new entry: ``with store.writer(key) as w: w.empty(...)``."""
        return EntryWriter(self.path(key), meta or {})

    def remove(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    def get_or_compute(self, spec: Any, compute: Callable[[], tuple[dict, dict]],
                       mmap: bool = False) -> tuple[dict[str, np.ndarray], dict]:
        key = hash_key(spec)
        hit = self.load(key, mmap=mmap)
        if hit is not None:
            return hit
        arrays, meta = compute()
        self.save(key, arrays, {**meta, "spec": spec})
        return self.load(key, mmap=mmap)  # type: ignore[return-value]


class EntryWriter:
    """Writes an entry into a temporary folder; renamed into place only on success."""

    def __init__(self, folder: Path, meta: dict):
        self.folder, self.meta = folder, meta
        self.names: list[str] = []

    def __enter__(self) -> "EntryWriter":
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.folder.parent, prefix=f".{self.folder.name}."))
        return self

    def put(self, name: str, arr: np.ndarray) -> None:
        np.save(self.tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        self.names.append(name)

    def empty(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A writable memory-mapped array that becomes ``name`` in the entry."""
        self.names.append(name)
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=dtype,
                                         shape=tuple(shape))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            files = {}
            for name in self.names:
                file = self.tmp / f"{name}.npy"
                files[name] = {"size": file.stat().st_size, "sha256": file_sha256(file)}
            (self.tmp / "manifest.json").write_text(
                json.dumps({"files": files, "meta": self.meta}, indent=1, default=str))
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(self.tmp, self.folder)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
