"""`diffred data fetch` through the real download code, against a local HTTP server standing in
for the canonical sources (serving copies of mirror files in their upstream form), and the
manifest's checksums against the mirror itself."""
import gzip
import hashlib
import io
import os
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

import diffred.core.datasets as ds
from diffred.book import cli
from diffred.core import fetch as F
from diffred.core.assets import assets_table
from diffred.core.data_manifest import MANIFEST

MIRROR = Path(os.environ["DIFFRED_DATA"])
needs_mirror = pytest.mark.skipif(not (MIRROR / "text").is_dir(), reason="no data mirror")


# --------------------------------------------------------------------------- the stand-in server
class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.root/<path>`` with ``Range`` support (unless ``server.ignore_range``);
    ``server.cut[path] = n`` closes the connection after ``n`` body bytes, once; every request
    is logged as ``(path, Range header)``."""

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        file = srv.root / unquote(self.path.lstrip("/"))
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        rng = None if srv.ignore_range else self.headers.get("Range")
        start = int(rng[len("bytes="):].split("-")[0]) if rng else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = srv.cut.pop(self.path, None)
        self.wfile.write(data[start:start + cut] if cut is not None else data[start:])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.root, srv.cut, srv.log, srv.ignore_range = tmp_path / "www", {}, [], False
    srv.root.mkdir()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(F.URL_BASE_ENV, srv.url)
    yield srv
    srv.shutdown()
    srv.server_close()


def served_path(entry: dict) -> str:
    """The URL path under which the stand-in serves ``entry['url']``."""
    return "/" + entry["url"].split("://", 1)[1]


def publish(srv, entry: dict, data: bytes | None = None) -> Path:
    """Put ``entry``'s source, in its upstream form rebuilt from the mirror, on the server."""
    mirror_file = MIRROR / entry["path"]
    if data is None:
        if entry["how"] == "download":
            data = mirror_file.read_bytes()
        elif entry["how"] == "gzip":
            data = gzip.decompress(mirror_file.read_bytes())
        elif entry["how"] == "zip":      # a repository archive: one top folder, plus a file to skip
            buf = io.BytesIO()
            with zipfile.ZipFile(mirror_file) as src, zipfile.ZipFile(buf, "w") as out:
                out.writestr("repo-0123abc/README.md", b"not part of the dataset\n")
                for info in src.infolist():
                    if not info.is_dir():
                        out.writestr("repo-0123abc/" + info.filename, src.read(info))
            data = buf.getvalue()
        elif entry["how"] == "extract":  # a data package holding the members
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as out:
                for e in MANIFEST:
                    if e["url"] == entry["url"]:
                        out.writestr(e["member"], (MIRROR / e["path"]).read_bytes())
            data = buf.getvalue()
    path = srv.root / served_path(entry).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def entries(*names):
    return [e for e in MANIFEST if e["dataset"] in names]


# --------------------------------------------------------------------------- the manifest
@needs_mirror
def test_every_manifest_checksum_matches_the_mirror():
    on_disk = {str(p.relative_to(MIRROR)) for p in MIRROR.rglob("*") if p.is_file()} - {"README.md"}
    assert {e["path"] for e in MANIFEST} == on_disk
    assert set(F.dataset_names()) == set(ds.DATASETS) - {"fashion_mnist", "elpv"}
    for entry in MANIFEST:
        path = MIRROR / entry["path"]
        assert path.stat().st_size == entry["size"], entry["path"]
        assert F.sha256_file(path) == entry["sha256"], entry["path"]
        assert F.content_sha256(entry, path) == F.expected_checksum(entry), entry["path"]
        assert entry["how"] in ("download", "extract") or "content_sha256" in entry
        assert entry["url"].startswith("https://") and entry["licence"]


def test_content_checksums_ignore_packing_but_not_content(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    with zipfile.ZipFile(a, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/", b"")
        zf.writestr("d/x", b"1")
        zf.writestr("y", b"22")
    F._write_zip(b, [("y", b"22"), ("d/x", b"1")])
    assert F.zip_content_sha256(a) == F.zip_content_sha256(b) != F.members_sha256([("d/x", b"2")])
    (tmp_path / "c.gz").write_bytes(gzip.compress(b"abc", mtime=123))
    assert F.gz_content_sha256(tmp_path / "c.gz") == hashlib.sha256(b"abc").hexdigest()


# --------------------------------------------------------------------------- fetching
@needs_mirror
def test_fetch_lands_verified_files_in_the_layout(server, tmp_path):
    for entry in entries("sst2", "ud_pos", "sign_digits"):
        publish(server, entry)
    target = tmp_path / "data"
    written = F.fetch(["sst2", "ud_pos", "sign_digits"], target, only_target=True, progress=False)
    assert sorted(written) == sorted(target / e["path"] for e in
                                     entries("sst2", "ud_pos", "sign_digits"))
    for entry in entries("sst2", "ud_pos", "sign_digits"):
        assert F.content_sha256(entry, target / entry["path"]) == F.expected_checksum(entry)
    assert F.sha256_file(target / "text/sst2/train.tsv") == entries("sst2")[0]["sha256"]
    assert not list(target.rglob("*.part")) and not list(target.rglob("*.tmp"))
    assert F.find_entry(entries("sign_digits")[0], [target]) == \
        target / "vision/sign-language-digits.zip"
    # what is there is not fetched again
    n = len(server.log)
    assert F.fetch(["sst2"], target, only_target=True, log=lambda _: None) == []
    assert len(server.log) == n


@needs_mirror
def test_extract_takes_the_member_byte_for_byte(server, tmp_path):
    manifest = [{k: v for k, v in e.items() if k not in ("url_sha256", "url_size")}
                for e in entries("trec")]           # the stand-in package is not NLTK's zip
    publish(server, manifest[0])
    F.fetch(["trec"], tmp_path, only_target=True, manifest=manifest, progress=False)
    for entry in manifest:
        assert (tmp_path / entry["path"]).read_bytes() == (MIRROR / entry["path"]).read_bytes()
    assert len(server.log) == 1                     # one download for both files of the package


@needs_mirror
def test_a_corrupted_byte_is_detected_and_the_file_removed(server, tmp_path):
    entry = entries("sst2")[2]
    data = bytearray((MIRROR / entry["path"]).read_bytes())
    data[1000] ^= 1
    publish(server, entry, bytes(data))
    with pytest.raises(F.FetchError, match=r"checksum mismatch for text/sst2/test.tsv .*removed"):
        F.fetch(["sst2"], tmp_path, only_target=True, manifest=[entry], progress=False)
    assert not (tmp_path / entry["path"]).exists() and not list(tmp_path.rglob("*.part"))


@needs_mirror
def test_an_interrupted_download_resumes(server, tmp_path):
    entry = entries("sst2")[0]
    publish(server, entry)
    server.cut[served_path(entry)] = 100_000        # the connection drops after 100 kB, once
    F.fetch(["sst2"], tmp_path, only_target=True, manifest=[entry], progress=False)
    assert server.log == [(served_path(entry), None), (served_path(entry), "bytes=100000-")]
    assert F.sha256_file(tmp_path / entry["path"]) == entry["sha256"]


@needs_mirror
@pytest.mark.parametrize("ignore_range", [False, True])
def test_a_part_file_left_by_an_earlier_run_is_resumed(server, tmp_path, ignore_range):
    """... or downloaded afresh when the server ignores Range (answers 200, whole file)."""
    entry = entries("cola")[1]
    publish(server, entry)
    server.ignore_range = ignore_range
    target = tmp_path / "data"
    stale = F.part_path(target, entry["url"])
    stale.parent.mkdir(parents=True)
    stale.write_bytes((MIRROR / entry["path"]).read_bytes()[:5000])
    server.log.clear()
    F.fetch(["cola"], target, only_target=True, manifest=[entry], progress=False)
    assert server.log == [(served_path(entry), "bytes=5000-")]
    assert F.sha256_file(target / entry["path"]) == entry["sha256"] and not stale.exists()


def test_a_404_gives_one_clear_line(server, tmp_path, capsys):
    assert cli.main(["data", "fetch", "cola", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("diffred: error: HTTP 404") and "in_domain_train.tsv" in err


def test_offline_names_the_missing_datasets_and_the_command(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(F.URL_BASE_ENV, f"http://127.0.0.1:{port}")
    assert cli.main(["data", "fetch", "rte", "mrpc", "--to", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "cannot reach" in err and "missing datasets: mrpc, rte" in err
    assert "`diffred data fetch mrpc rte`" in err
    assert not any(tmp_path.iterdir())


def test_a_folder_that_cannot_be_written_gives_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["data", "fetch", "trec", "--to", str(tmp_path / "file" / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("diffred: error: cannot write into")


def test_bad_requests_name_the_valid_choices(capsys):
    assert cli.main(["data", "fetch", "sst3"]) == 2
    assert "unknown dataset to fetch 'sst3'; valid choices: cifar10" in capsys.readouterr().err
    assert cli.main(["data", "fetch"]) == 2
    assert "--all" in capsys.readouterr().err
    assert cli.main(["data", "fetch", "fashion_mnist"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_assets_say_where_each_dataset_is_or_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "data_dirs", lambda: [tmp_path])
    row = assets_table().set_index("name").loc["sst2"]
    assert row["available"] == "no" and row["how to get"] == "missing — `diffred data fetch sst2`"
    (tmp_path / "text/sst2").mkdir(parents=True)
    (tmp_path / "text/sst2/train.tsv").write_text("sentence\tlabel\n")
    assert assets_table().set_index("name").loc["sst2", "available"] == "no"   # dev, test absent
    for name in ("dev.tsv", "test.tsv"):
        (tmp_path / "text/sst2" / name).write_text("sentence\tlabel\n")
    row = assets_table().set_index("name").loc["sst2"]
    assert row["available"] == "yes" and row["source"] == str(tmp_path / "text/sst2")
