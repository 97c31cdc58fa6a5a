"""``diffred data fetch``: the files of the data mirror, from their canonical sources.

Every file of the mirror layout (``vision/*.zip``, ``text/<task>/*``) is one entry of
:data:`diffred.core.data_manifest.MANIFEST`: its canonical URL, licence, size and sha256, and how the
file is obtained from what that URL serves (``how``; see :mod:`diffred.core.data_manifest`).

A download goes to ``<target>/.downloads/<name>.part``; an interrupted transfer is resumed with
an HTTP ``Range`` request (a few times in the same run, else by the next run).  The result is
verified against the manifest's checksum in a temporary file that is then renamed into place, so
a file in the layout is always complete and verified; a file that fails its checksum is deleted.
Only the standard library talks HTTP (``urllib``).

``DIFFRED_DATA_URL_BASE`` (or ``url_base=``) redirects every download: ``https://host/path`` is
fetched from ``<base>/host/path`` — a local copy of the sources, or a test's server.
"""
from __future__ import annotations

import fnmatch
import gzip
import hashlib
import http.client
import io
import os
import zipfile
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from diffred.core.data_manifest import MANIFEST
from diffred.core.errors import DiffredError, check_choice
from diffred.core.paths import data_dirs, default_data_dir

URL_BASE_ENV = "DIFFRED_DATA_URL_BASE"
TIMEOUT_S = 30
ATTEMPTS = 4            # one transfer plus three resumptions per run
CHUNK = 1 << 16
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
IDENTICAL = ("download", "extract")      # ``how`` of entries byte-identical to the mirror's file


class FetchError(DiffredError):
    """A download that failed: HTTP error, network failure or checksum mismatch (one line)."""


class NetworkError(FetchError):
    """The source could not be reached at all (offline)."""


# --------------------------------------------------------------------------- checksums
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def members_sha256(members) -> str:
    """Content checksum of ``(name, bytes)`` pairs: sha256 over, in sorted name order, each
    ``name + NUL + 8-byte big-endian length + bytes`` — independent of how a zip is packed."""
    h = hashlib.sha256()
    for name, data in sorted(members):
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def zip_content_sha256(path: Path) -> str:
    """:func:`members_sha256` of a zip's files (directory entries ignored)."""
    with zipfile.ZipFile(path) as zf:
        return members_sha256((i.filename, zf.read(i)) for i in zf.infolist() if not i.is_dir())


def gz_content_sha256(path: Path) -> str:
    """sha256 of a gzip file's decompressed bytes."""
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(entry: dict, path: Path) -> str:
    """The checksum the manifest verifies ``path`` by: sha256 of the bytes for byte-identical
    entries, else the content checksum that the entry's rebuild reproduces."""
    if entry["how"] == "gzip":
        return gz_content_sha256(path)
    if entry["how"] in ("zip", "resize"):
        return zip_content_sha256(path)
    return sha256_file(path)


def expected_checksum(entry: dict) -> str:
    return entry.get("content_sha256", entry["sha256"])


# --------------------------------------------------------------------------- selection
def dataset_names(manifest=MANIFEST) -> list[str]:
    """Datasets the manifest can fetch, in manifest order."""
    return list(dict.fromkeys(e["dataset"] for e in manifest))


def entries_for(names, manifest=MANIFEST) -> list[dict]:
    """Manifest entries of the named datasets (each name checked against the valid choices)."""
    from diffred.core.datasets import DATASETS
    valid = dataset_names(manifest)
    for name in names:
        if name in DATASETS and name not in valid:
            raise DiffredError(f"dataset {name!r} is an installed package, not fetched by diffred: "
                               f"{DATASETS[name].how_to_get}")
        check_choice("dataset to fetch", name, valid)
    return [e for e in manifest if e["dataset"] in set(names)]


def find_entry(entry: dict, dirs) -> Path | None:
    """The first ``<dir>/<path>`` that is there — with the manifest's size for a byte-identical
    entry (a rebuilt file's size may differ; fetch writes it only once verified) — or None."""
    for d in dirs:
        p = Path(d) / entry["path"]
        if p.is_file() and (entry["how"] not in IDENTICAL or p.stat().st_size == entry["size"]):
            return p
    return None


def missing_entries(entries, dirs) -> list[dict]:
    return [e for e in entries if find_entry(e, dirs) is None]


def fetch_target() -> Path:
    """Where fetched files go: ``$DIFFRED_DATA``, else :func:`diffred.core.paths.default_data_dir`."""
    env = os.environ.get("DIFFRED_DATA")
    return Path(env).expanduser() if env else default_data_dir()


# --------------------------------------------------------------------------- HTTP
def resolve_url(url: str, url_base: str | None = None) -> str:
    base = url_base if url_base is not None else os.environ.get(URL_BASE_ENV)
    if not base:
        return url
    return base.rstrip("/") + "/" + quote(url.split("://", 1)[1])


def download(url: str, part: Path, size: int | None = None, progress: bool | None = None,
             label: str = "", on_response=None) -> Path:
    """Download ``url`` into ``part`` (appending to what an earlier, interrupted try left there)
    and return it.  ``size``: the expected length, when known; ``on_response()`` is called when
    the server answers (before any byte is written)."""
    from tqdm.auto import tqdm
    part.parent.mkdir(parents=True, exist_ok=True)
    last = None
    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have >= size:
            if have == size:
                return part
            part.unlink()
            have = 0
        headers = {"User-Agent": "diffred-data-fetch"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urlopen(Request(url, headers=headers), timeout=TIMEOUT_S) as resp:
                if on_response:
                    on_response()
                if have and resp.status != 206:          # the server ignored Range: start over
                    have = 0
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else size
                with open(part, "ab" if have else "wb") as f, \
                        tqdm(total=total, initial=have, unit="B", unit_scale=True,
                             unit_divisor=1024, desc=label or Path(url).name,
                             disable=None if progress is None else not progress) as bar:
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            if total is None or part.stat().st_size >= total:
                return part
            last = f"connection closed after {part.stat().st_size} of {total} bytes"
        except HTTPError as err:
            if err.code == 416 and have:                 # nothing left to send: already complete
                return part
            raise FetchError(f"HTTP {err.code} {err.reason} for {url}") from None
        except URLError as err:                          # not reached at all (DNS, refused, ...)
            raise NetworkError(f"cannot reach {urlsplit(url).netloc}: {err.reason}") from None
        except (http.client.HTTPException, ConnectionError, TimeoutError) as err:
            last = f"{type(err).__name__}: {err}"          # interrupted mid-transfer: resume
    raise NetworkError(f"download of {url} interrupted {ATTEMPTS} times ({last}); "
                       f"run again to resume from {part}")


# --------------------------------------------------------------------------- rebuilding
def _archive_members(zf: zipfile.ZipFile, patterns, strip: bool):
    """``(name, bytes)`` of the files matching ``patterns``; ``strip`` drops the top folder of a
    repository archive (``<repo>-<commit>/``)."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = info.filename.split("/", 1)[1] if strip else info.filename
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            yield name, zf.read(info)


def resize_short_side(data: bytes, short: int = 256, quality: int = 90) -> bytes:
    """A JPEG resized (bicubic) so that its short side is ``short``, re-encoded by Pillow."""
    from PIL import Image
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _write_zip(path: Path, members) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


def build(entry: dict, source: Path, out: Path) -> None:
    """Write the entry's file to ``out`` from its downloaded ``source`` (see ``how``)."""
    how = entry["how"]
    if how == "extract":
        with zipfile.ZipFile(source) as zf:
            out.write_bytes(zf.read(entry["member"]))
    elif how == "gzip":
        out.write_bytes(gzip.compress(source.read_bytes(), compresslevel=9, mtime=0))
    elif how in ("zip", "resize"):
        with zipfile.ZipFile(source) as zf:
            members = list(_archive_members(zf, entry["members"], strip=True))
        if how == "resize":
            if members_sha256(members) != entry["source_content_sha256"]:
                raise FetchError(f"checksum mismatch for the images of {entry['url']} "
                                 f"(source of {entry['path']}); nothing written")
            members = [(n, resize_short_side(d, **entry["resize"])) for n, d in members]
        _write_zip(out, members)
    else:
        raise ValueError(f"unknown manifest 'how' {how!r} for {entry['path']}; valid choices: "
                         f"download, extract, gzip, zip, resize")


def _verify(entry: dict, path: Path, url: str) -> None:
    got = content_sha256(entry, path)
    if got != expected_checksum(entry):
        path.unlink(missing_ok=True)
        hint = (" (re-encoded JPEGs: Pillow with a different JPEG library?)"
                if entry["how"] == "resize" else "")
        raise FetchError(f"checksum mismatch for {entry['path']} from {url}: expected "
                         f"{expected_checksum(entry)[:16]}..., got {got[:16]}...{hint}; "
                         f"the file was removed")


# --------------------------------------------------------------------------- fetch
def fetch(names=None, target: Path | None = None, *, only_target: bool = False,
          url_base: str | None = None, progress: bool | None = None, manifest=MANIFEST,
          log=print) -> list[Path]:
    """Download the missing files of the named datasets (all when ``names`` is None) into
    ``target`` (default :func:`fetch_target`) and return the paths written.

    A file counts as present (:func:`find_entry`) in ``target`` or, unless ``only_target``, in
    any folder of :func:`diffred.core.paths.data_dirs`.  Raises
    :class:`FetchError` (one line) on an HTTP error or a checksum mismatch, and
    :class:`NetworkError` when a source cannot be reached.
    """
    target = Path(target or fetch_target()).expanduser()
    entries = list(manifest) if names is None else entries_for(names, manifest)
    todo = missing_entries(entries, [target] if only_target else [target, *data_dirs()])
    if not todo:
        log("data: nothing to fetch, every requested dataset is present")
        return []
    try:
        (target / ".downloads").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FetchError(f"cannot write into {target} ({err.strerror}); give another folder "
                         f"with --to DIR or DIFFRED_DATA") from None
    said = False

    def announce():              # said once the network answers: offline gives one line only
        nonlocal said
        if not said:
            log(f"data: fetching {', '.join(dataset_names(todo))} into {target} from the "
                f"canonical sources (network)")
            said = True
    written = []
    try:
        for url in dict.fromkeys(e["url"] for e in todo):
            group = [e for e in todo if e["url"] == url]
            written += _fetch_source(url, group, target, url_base, progress, announce)
    except NetworkError as err:
        left = dataset_names([e for e in todo if not (target / e["path"]).is_file()])
        names = "--all" if left == dataset_names(manifest) else " ".join(left)
        raise NetworkError(f"{err}; missing datasets: {', '.join(left)} — run `diffred data "
                           f"fetch {names}` when online, or set DIFFRED_DATA to a mirror") from None
    finally:
        if (target / ".downloads").is_dir() and not any((target / ".downloads").iterdir()):
            (target / ".downloads").rmdir()
    return written


def part_path(target: Path, url: str) -> Path:
    """Where the download of ``url`` accumulates (kept after an interruption, for resuming)."""
    key = hashlib.sha1(url.encode()).hexdigest()[:12]
    return target / ".downloads" / f"{key}-{Path(url).name}.part"


def _fetch_source(url, group, target, url_base, progress, announce) -> list[Path]:
    """Download one source and write every entry built from it."""
    first = group[0]
    real = resolve_url(url, url_base)
    part = part_path(target, url)
    size = first["size"] if first["how"] == "download" else first.get("url_size")
    download(real, part, size, progress, label=first["path"] if len(group) == 1 else Path(url).name,
             on_response=announce)
    written = []
    try:
        if first["how"] != "download" and first.get("url_sha256") \
                and sha256_file(part) != first["url_sha256"]:
            raise FetchError(f"checksum mismatch for {real} (source of {first['path']}); "
                             f"the download was removed")
        for entry in group:
            final = target / entry["path"]
            final.parent.mkdir(parents=True, exist_ok=True)
            if entry["how"] == "download":
                _verify(entry, part, real)
                os.replace(part, final)
            else:
                tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                try:
                    try:
                        build(entry, part, tmp)
                    except (KeyError, zipfile.BadZipFile) as err:
                        raise FetchError(f"{real} is not the expected archive ({err}); "
                                         f"nothing written for {entry['path']}") from None
                    _verify(entry, tmp, real)
                    os.replace(tmp, final)
                finally:
                    tmp.unlink(missing_ok=True)
            written.append(final)
    finally:
        part.unlink(missing_ok=True)        # verified sources are not kept; a bad one is removed
    return written
