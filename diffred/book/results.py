"""Tidy result tables with provenance, written atomically beside the book's figures, and read
back with their types.

Every table is written three ways: ``<name>.parquet`` (dtypes kept), ``<name>.csv`` (for any
tool) and ``<name>.json`` (its provenance: code and library versions, device, the chapter's
parameters).  :func:`load` reads a chapter's tables back as DataFrames — from Parquet, so
integers stay integers and booleans booleans — with their provenance; :func:`read_table` reads
one.  :class:`ResultSet` keeps a chapter's tables whole: they are staged in a temporary folder
and swapped into ``<results>/<chapter>/`` in one step by :meth:`ResultSet.commit`, so a run
killed half-way leaves the previous tables intact.  :func:`save_table` writes one table.
"""
from __future__ import annotations

import ctypes
import io
import json
import os
import platform
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from diffred._version import __version__
from diffred.core.cache import atomic_write_bytes
from diffred.core.paths import results_dir


def provenance(**extra) -> dict:
    """Code version, library versions, device and any chapter parameters (``extra``)."""
    import torch
    return {"diffred": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def _parquet(df: pd.DataFrame) -> bytes:
    """``df`` as Parquet; a column of several Python types (e.g. numbers and text in one
    "paper" column) is stored as text, every other column keeps its dtype."""
    import pyarrow as pa
    frame = df.reset_index(drop=True)
    for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        try:
            pa.array(frame[column], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            frame[column] = frame[column].map(lambda v: v if v is None or v != v else str(v))
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _table_files(df: pd.DataFrame, name: str, params: dict) -> dict[str, bytes]:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return {f"{name}.csv": buf.getvalue().encode(), f"{name}.parquet": _parquet(df),
            f"{name}.json": json.dumps(provenance(table=name, rows=len(df), **params), indent=1,
                                       default=str).encode()}


def save_table(df: pd.DataFrame, name: str, chapter: str, **params) -> Path:
    """Write ``df`` to ``<results>/<chapter>/<name>.csv`` and its provenance to ``<name>.json``.

    Rows should already carry per-row provenance columns (model, weights hash, dataset,
    subset, seed); ``params`` records the chapter parameters that produced the table.
    """
    folder = results_dir() / chapter
    for file, data in _table_files(df, name, params).items():
        atomic_write_bytes(folder / file, data)
    return folder / f"{name}.csv"


class ResultSet:
    """Tables of one chapter run, staged in a temp folder beside <results>/<chapter>/ and
    swapped into place atomically by commit(); an interrupted run leaves the previous tables intact.

    >>> with ResultSet("01_diffuse_redundancy") as rs:   # commit() on success
    ...     rs.save(df, "accuracy", quick=True)

    The committed folder holds exactly this run's tables (a table the run did not save is
    gone); a run that saved nothing leaves the folder as it was.
    """

    def __init__(self, chapter: str, root: Path | None = None):
        self.chapter = chapter
        self.root = Path(root) if root is not None else results_dir()
        self.folder = self.root / chapter
        self._stage: Path | None = None

    def _staging(self) -> Path:
        if self._stage is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._stage = Path(tempfile.mkdtemp(
                dir=self.root, prefix=f".{self.chapter}.stage-{os.getpid()}-"))
            os.chmod(self._stage, 0o755)           # mkdtemp's 0700 would hide the tables
        return self._stage

    def save(self, df: pd.DataFrame, name: str, **params) -> Path:
        """CSV + ``.json`` provenance into the staging folder; returns the final path."""
        stage = self._staging()
        for file, data in _table_files(df, name, params).items():
            (stage / file).write_bytes(data)
        return self.folder / f"{name}.csv"

    def save_file(self, name: str, data: bytes) -> Path:
        """One more file (``provenance.json``) staged with the tables; returns the final path."""
        (self._staging() / name).write_bytes(data)
        return self.folder / name

    def commit(self) -> Path:
        """Swap the staged tables into ``<results>/<chapter>/`` (the old folder is removed)."""
        if self._stage is not None:
            stage, self._stage = self._stage, None
            _swap(stage, self.folder)
            _remove_stale_stages(self.root, self.chapter)
        return self.folder

    def discard(self) -> None:
        """Drop the staged tables (the previous ones stay)."""
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None

    def __enter__(self) -> ResultSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.commit() if exc_type is None else self.discard()


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); OSError if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise OSError(0, "renameat2 unavailable") from None
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(b))


def _swap(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``; a previous ``target`` goes to ``new``'s name, then away.

    With ``renameat2`` the target is never missing; elsewhere it is renamed aside first."""
    try:
        os.rename(new, target)                  # no previous folder (or an empty one)
        return
    except OSError:
        if not target.exists():
            raise
    try:
        _exchange(new, target)
    except OSError:
        trash = new.with_name(new.name.replace(".stage-", ".trash-", 1))
        os.rename(target, trash)
        os.rename(new, target)
        new = trash
    shutil.rmtree(new, ignore_errors=True)


def _remove_stale_stages(root: Path, chapter: str) -> None:
    """Staging folders of ``chapter`` left by runs that were killed."""
    pattern = re.compile(rf"\.{re.escape(chapter)}\.(?:stage|trash)-(\d+)-\w+")
    for path in root.glob(f".{chapter}.*"):
        m = pattern.fullmatch(path.name)
        if m and path.is_dir():
            try:
                os.kill(int(m.group(1)), 0)
                continue                        # its run is still going
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- reading back
class ChapterResults(dict):
    """A chapter's tables by name (``name -> DataFrame``), with ``provenance`` (the run's
    ``provenance.json``: parameters, versions, hardware) and ``table_provenance[name]`` (each
    table's ``.json``)."""

    def __init__(self, chapter: str, folder: Path, tables: dict, provenance: dict,
                 table_provenance: dict):
        super().__init__(tables)
        self.chapter, self.folder = chapter, folder
        self.provenance, self.table_provenance = provenance, table_provenance

    def __repr__(self) -> str:
        return f"ChapterResults({self.chapter!r}, {len(self)} tables: {', '.join(self)})"


def _chapter_folder(chapter: str, root: Path | None) -> Path:
    root = Path(root) if root is not None else results_dir()
    if (root / chapter).is_dir():
        return root / chapter
    found = sorted(p for p in root.glob(f"{chapter}_*") if p.is_dir()) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    have = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if root.is_dir() else []
    raise FileNotFoundError(f"no results of chapter {chapter!r} in {root}; there are: "
                            f"{', '.join(have) or 'none (run the chapter first)'}")


def _read(folder: Path, name: str) -> pd.DataFrame:
    parquet = folder / f"{name}.parquet"
    return pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(folder / f"{name}.csv")


def read_table(name: str, chapter: str, root: Path | None = None) -> pd.DataFrame:
    """One table of a chapter's results (Parquet when written, else CSV).

    Parameters
    ----------
    name : str
        The table's name (its file stem, e.g. ``"probe_runs"``).
    chapter, root : str, path
        As :func:`load`.

    Returns
    -------
    DataFrame
        The table, dtypes kept where it was written as Parquet.
    """
    folder = _chapter_folder(chapter, root)
    if not (folder / f"{name}.parquet").exists() and not (folder / f"{name}.csv").exists():
        names = sorted(p.stem for p in folder.glob("*.csv"))
        raise FileNotFoundError(f"no table {name!r} in {folder}; valid choices: {', '.join(names)}")
    return _read(folder, name)


def load(chapter: str, root: Path | None = None) -> ChapterResults:
    """Every table of a chapter's last committed run, as tidy DataFrames with provenance.

    Parameters
    ----------
    chapter : str
        ``"01"`` or ``"01_diffuse_redundancy"``.
    root : path, optional
        The results folder (default ``$DIFFRED_RESULTS``, else the book's ``data/results``).

    Returns
    -------
    ChapterResults
        A dict ``table name -> DataFrame`` (dtypes from Parquet) with ``.provenance`` and
        ``.table_provenance``.
    """
    folder = _chapter_folder(chapter, root)
    names = sorted({p.stem for p in folder.glob("*.csv")} | {p.stem for p in folder.glob("*.parquet")})
    meta = {n: json.loads((folder / f"{n}.json").read_text()) for n in names
            if (folder / f"{n}.json").exists()}
    run = folder / "provenance.json"
    return ChapterResults(folder.name, folder, {n: _read(folder, n) for n in names},
                          json.loads(run.read_text()) if run.exists() else {}, meta)
