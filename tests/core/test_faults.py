"""Fault injection: damaged, interrupted, racing, full and read-only caches and results.

Each test asserts that nothing corrupted is ever returned and that the right thing is
recomputed.  Extractions are real (efficientnet_lite0 on 20 sign_digits images).
"""
import builtins
import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import diffred
from diffred.book.results import ResultSet, _exchange
from diffred.core import cache as C
from diffred.core import extract as ex
from diffred.core.errors import CacheWriteError

MODEL, DATA = "efficientnet_lite0", "sign_digits"
TINY = f"diffred.features({MODEL!r}, {DATA!r}, 'train', n_per_class=2, progress=False)"


def tiny():
    return diffred.features(MODEL, DATA, "train", n_per_class=2, progress=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache; the verified-files memo is reset as in a new process."""
    monkeypatch.setenv("DIFFRED_CACHE", str(tmp_path / "cache"))
    C._VERIFIED.clear()
    return tmp_path / "cache"


@pytest.fixture
def extractions(monkeypatch):
    calls = []
    real = ex._extract_vision
    monkeypatch.setattr(ex, "_extract_vision", lambda *a, **k: (calls.append(1), real(*a, **k)))
    return calls


def leftovers(root: Path) -> list:
    return [p for p in root.rglob(".*") if p.name != "weights-sha256.json"]


def python(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def failing(code: int):
    """A stand-in for a write call that fails with OS error ``code``."""
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


refuse = failing(errno.EROFS)


def make_read_only(monkeypatch):
    """From now on every call that would write to a file system fails with EROFS."""
    real_open, real_os_open = io.open, os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def open_(file, mode="r", *args, **kwargs):
        writes = any(c in mode for c in "wax+")
        return refuse() if writes else real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        return refuse() if flags & writing else real_os_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    for name in ("mkdir", "rename", "replace", "unlink", "remove", "rmdir", "utime", "chmod"):
        monkeypatch.setattr(os, name, refuse)
    for name in ("mkdtemp", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)


# --------------------------------------------------------------------------- damaged entries
def flip(path: Path, n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of ``path`` (same size)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


DAMAGE = {
    "byte_flip": lambda e: flip(e / "X.npy"),
    "label_flip": lambda e: flip(e / "y.npy", 8),
    "truncation": lambda e: (e / "X.npy").write_bytes((e / "X.npy").read_bytes()[:-100]),
    "deleted_array": lambda e: (e / "X.npy").unlink(),
    "deleted_manifest": lambda e: (e / "manifest.json").unlink(),
    "torn_manifest": lambda e: (e / "manifest.json").write_text('{"format": 2, "files": {'),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_feature_entry_is_never_returned_and_is_recomputed(
        damage, cache, extractions, capfd):
    first = tiny()
    expected, labels, key = np.array(first.X), np.array(first.y), first.meta["key"]
    entry = ex.STORE.path(key)
    size = (entry / "X.npy").stat().st_size
    DAMAGE[damage](entry)
    if damage == "byte_flip":
        assert (entry / "X.npy").stat().st_size == size
    C._VERIFIED.clear()                                    # a later run: a new process
    capfd.readouterr()
    again = tiny()
    warning = capfd.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and f"cache entry features/{key} is damaged" in warning[0]
    assert len(extractions) == 2                           # recomputed, once
    np.testing.assert_array_equal(again.X, expected)
    np.testing.assert_array_equal(again.y, labels)
    assert np.isfinite(again.X).all()
    assert ex.STORE.check(key) is None and not leftovers(ex.STORE.root)
    assert entry.stat().st_mode & 0o777 == 0o755            # readable by other users


def test_first_open_hashes_and_warm_reads_are_free(cache, monkeypatch):
    store, key = C.ArrayStore("k"), "ab" * 16
    hashed = []
    real = C._digest
    monkeypatch.setattr(C, "_digest", lambda f, algo=C.HASH: (hashed.append(1), real(f, algo))[1])
    store.save(key, {"X": np.arange(1000.0), "y": np.arange(10)})
    assert len(hashed) == 2                                      # the commit hashes each file
    assert store.load(key) is not None and len(hashed) == 2      # its writer need not re-hash
    C._VERIFIED.clear()                                          # another process
    hashed.clear()
    assert store.load(key) is not None and len(hashed) == 2      # first open: every file
    assert store.load(key, mmap=True) is not None and len(hashed) == 2   # warm: no hashing
    assert store.load(key, verify=True) is not None and len(hashed) == 4
    flip(store.path(key) / "X.npy", 8)
    st = (store.path(key) / "X.npy").stat()                      # a rewrite changes mtime
    os.utime(store.path(key) / "X.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert store.load(key, verify=False) is not None and len(hashed) == 4   # opt-out: sizes only
    assert store.load(key) is None                               # changed file: hashed again


def test_old_sha256_and_blake2b_manifests_load(cache):
    store = C.ArrayStore("k")
    for key, algo, fmt in (("a" * 32, "sha256", 1), ("b" * 32, "blake2b", 2)):
        folder = store.path(key)
        folder.mkdir(parents=True)
        np.save(folder / "X.npy", np.arange(5))
        digest = hashlib.new(algo, (folder / "X.npy").read_bytes()).hexdigest()
        rec = {"size": (folder / "X.npy").stat().st_size, algo: digest}
        manifest = {"files": {"X": rec}} if fmt == 1 else {"format": 2, "files": {"X.npy": rec}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        np.testing.assert_array_equal(store.load(key)[0]["X"], np.arange(5))
        flip(folder / "X.npy", 4)
        C._VERIFIED.clear()
        assert store.load(key) is None and not folder.exists()


def test_a_reader_never_mixes_two_versions_of_an_entry(cache, monkeypatch):
    store, key = C.ArrayStore("k"), "cd" * 16
    store.save(key, {"X": np.zeros(4), "y": np.zeros(4)})
    real, swapped = C._open_at, []

    def open_then_replace(dfd, name):                 # another process replaces the entry
        f = real(dfd, name)                            # while this one is reading it
        if name == "manifest.json" and not swapped:
            swapped.append(1)
            os.rename(store.path(key), store.path(key).with_name("elsewhere"))
            C.ArrayStore("k").save(key, {"X": np.ones(4), "y": np.ones(4)})
        return f
    monkeypatch.setattr(C, "_open_at", open_then_replace)
    arrays, _ = store.load(key, verify=True)
    assert swapped and arrays["X"].sum() == 0 and arrays["y"].sum() == 0   # all old, none new
    assert store.load(key)[0]["X"].sum() == 4


# --------------------------------------------------------------------------- interrupted / racing
def test_kill_9_during_an_entry_write_leaves_no_entry_and_rerun_computes_it(cache, extractions):
    slow = f"""
        import time, diffred, tqdm.auto
        real = tqdm.auto.tqdm.update     # widen the window (outside diffred: keys stay the same)
        tqdm.auto.tqdm.update = lambda self, n=1: (time.sleep(1.0), real(self, n))[1]
        {TINY}
        """
    proc = python(slow)
    deadline = time.time() + 120
    while not list((cache / "features").glob("*/.*.tmp-*")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.005)
    time.sleep(0.3)                                       # inside the forward passes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(C.entries(cache)) == []                   # no half entry
    (tmp,) = (cache / "features").glob("*/.*.tmp-*")      # the killed writer's folder
    f = tiny()
    assert len(extractions) == 1 and tmp.name.startswith(f".{f.meta['key']}.tmp-")
    assert ex.STORE.check(f.meta["key"]) is None and np.isfinite(f.X).all()
    assert (str(tmp.relative_to(cache)), "leftover") in C.collect_garbage(cache)
    assert not leftovers(cache)


def test_two_concurrent_writers_of_one_entry_both_finish_with_the_same_arrays(cache, tmp_path):
    race = f"""
        import hashlib, os, sys, time
        from pathlib import Path
        import numpy as np, diffred
        from diffred.core import cache
        barrier = Path(sys.argv[1])
        commit = cache.EntryWriter._commit

        def synced(self):                          # both commit at the same moment
            (barrier / str(os.getpid())).touch()
            start = time.time()
            while len(list(barrier.iterdir())) < 2 and time.time() - start < 90:
                time.sleep(0.002)
            mine = hashlib.sha256((self.tmp / "X.npy").read_bytes()).hexdigest()
            ino = os.stat(self.tmp).st_ino
            commit(self)
            print("won" if os.stat(self.folder).st_ino == ino else "lost", mine)
        cache.EntryWriter._commit = synced
        f = {TINY}
        print("final", hashlib.sha256((cache.ArrayStore("features").path(f.meta["key"])
                                       / "X.npy").read_bytes()).hexdigest(),
              hashlib.sha256(np.ascontiguousarray(f.X).tobytes()).hexdigest(), f.meta["key"])
        """
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [python(race, barrier) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    lines = [dict(line.split(" ", 1) for line in out.strip().splitlines()) for out, _ in outs]
    assert sorted(next(k for k in d if k in ("won", "lost")) for d in lines) == ["lost", "won"]
    winner = next(d["won"] for d in lines if "won" in d)
    finals = {d["final"] for d in lines}
    assert len(finals) == 1                                # identical arrays, from one entry
    file_digest, x_digest, key = finals.pop().split()
    assert file_digest == winner                           # the winner's copy, whole
    assert ex.STORE.check(key, verify=True) is None and not leftovers(cache)
    f = tiny()                                             # a third run reuses it
    assert hashlib.sha256(np.ascontiguousarray(f.X).tobytes()).hexdigest() == x_digest


def test_commit_keeps_a_valid_entry_and_replaces_a_damaged_one(cache, capfd):
    store, key = C.ArrayStore("k"), "ef" * 16
    store.save(key, {"X": np.zeros(3)})
    inode = store.path(key).stat().st_ino
    store.save(key, {"X": np.ones(3)})                     # a second writer of the same entry
    assert store.path(key).stat().st_ino == inode          # first valid writer wins
    np.testing.assert_array_equal(store.load(key)[0]["X"], np.zeros(3))
    flip(store.path(key) / "X.npy", 8)
    C._VERIFIED.clear()
    store.save(key, {"X": np.ones(3)})
    assert "is damaged" in capfd.readouterr().err
    np.testing.assert_array_equal(store.load(key)[0]["X"], np.ones(3))
    assert not leftovers(store.root)


# --------------------------------------------------------------------------- full / read-only
def test_disk_full_during_extraction_is_one_clear_error_and_leaves_nothing(
        cache, extractions, monkeypatch):
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", failing(errno.ENOSPC))
    with pytest.raises(CacheWriteError) as err:
        tiny()
    message = str(err.value)
    assert "\n" not in message and str(cache / "features") in message
    assert "No space left on device" in message
    assert list(C.entries(cache)) == [] and not leftovers(cache)
    monkeypatch.setattr(os, "posix_fallocate", real)       # space freed: the rerun works
    assert np.isfinite(tiny().X).all() and len(extractions) == 2


def test_disk_full_on_put(cache, monkeypatch, capfd):
    monkeypatch.setattr(np, "save", failing(errno.ENOSPC))
    store = C.ArrayStore("k")
    with pytest.raises(CacheWriteError, match="No space left on device"):
        store.save("12" * 16, {"X": np.ones(3)})
    capfd.readouterr()
    arrays, _ = store.get_or_compute({"a": 1}, lambda: ({"X": np.ones(3)}, {}))
    np.testing.assert_array_equal(arrays["X"], np.ones(3))      # computed arrays still returned
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert f"cannot write to the cache folder {store.root}" in line
    assert not [p for p in store.root.rglob("*") if p.is_file()] and not leftovers(store.root)


def test_read_only_cache_on_write_is_one_clear_error(cache, extractions, monkeypatch):
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(CacheWriteError, match="Read-only file system") as err:
        tiny()
    assert str(cache / "features") in str(err.value) and "\n" not in str(err.value)
    assert list(C.entries(cache)) == [] and not leftovers(cache)


def test_read_only_cache_serves_valid_entries_and_never_writes(cache, extractions, monkeypatch,
                                                               capfd):
    expected = np.array(tiny().X)
    store, bad = C.ArrayStore("k"), "34" * 16
    store.save(bad, {"X": np.zeros(3)})
    flip(store.path(bad) / "X.npy", 8)
    C._VERIFIED.clear()
    capfd.readouterr()
    bad_path, new_path = store.path(bad), store.path(C.hash_key({"b": 1}))
    make_read_only(monkeypatch)
    np.testing.assert_array_equal(tiny().X, expected)     # served, hash-checked, not recomputed
    assert len(extractions) == 1 and capfd.readouterr().err == ""
    assert store.load(bad) is None                         # damaged: not used, cannot be removed
    assert "could not remove it (Read-only file system)" in capfd.readouterr().err
    arrays, _ = store.get_or_compute({"b": 1}, lambda: ({"X": np.ones(2)}, {}))
    np.testing.assert_array_equal(arrays["X"], np.ones(2))
    err = capfd.readouterr().err
    assert "Read-only file system" in err and "result not cached" in err
    monkeypatch.undo()
    assert bad_path.exists() and not new_path.exists()     # nothing was written or removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions (simulated above)")
def test_really_read_only_folder(cache):
    store, key = C.ArrayStore("k"), "56" * 16
    store.save(key, {"X": np.arange(3)})
    for p in [store.root, *store.root.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        C._VERIFIED.clear()
        np.testing.assert_array_equal(store.load(key)[0]["X"], np.arange(3))
        with pytest.raises(CacheWriteError, match="Permission denied"):
            store.save("78" * 16, {"X": np.arange(3)})
    finally:
        for p in [store.root, *store.root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# --------------------------------------------------------------------------- results stay whole
def test_interrupted_chapter_run_leaves_the_previous_tables_intact(tmp_path):
    root = tmp_path / "results"
    with ResultSet("01_x", root) as rs:
        rs.save(pd.DataFrame({"v": [1, 1]}), "a")
        rs.save(pd.DataFrame({"v": [1]}), "c")
    before = {p.name: p.read_bytes() for p in (root / "01_x").iterdir()}
    proc = python("""
        import sys, time, pandas as pd
        from diffred.book.results import ResultSet
        rs = ResultSet("01_x", sys.argv[1])
        rs.save(pd.DataFrame({"v": [2, 2]}), "a")
        rs.save(pd.DataFrame({"v": [2]}), "b")
        print("staged", flush=True)
        time.sleep(120)
        rs.commit()
        """, root)
    assert proc.stdout.readline().strip() == "staged"
    proc.kill()
    proc.wait()
    assert {p.name: p.read_bytes() for p in (root / "01_x").iterdir()} == before
    assert len(list(root.glob(".01_x.stage-*"))) == 1      # the killed run's staging folder
    rs = ResultSet("01_x", root)                           # the rerun
    path = rs.save(pd.DataFrame({"v": [3]}), "a", quick=True)
    assert path == root / "01_x" / "a.csv" and pd.read_csv(path)["v"].tolist() == [1, 1]
    assert rs.commit() == root / "01_x"
    assert sorted(p.name for p in (root / "01_x").iterdir()) == ["a.csv", "a.json", "a.parquet"]
    assert pd.read_csv(path)["v"].tolist() == [3]
    assert json.loads((root / "01_x" / "a.json").read_text())["quick"] is True
    assert sorted(p.name for p in root.iterdir()) == ["01_x"]   # stale stage removed
    assert (root / "01_x").stat().st_mode & 0o777 == 0o755


def test_result_set_discards_on_error_and_exchange_swaps(tmp_path):
    with pytest.raises(RuntimeError):
        with ResultSet("02_y", tmp_path) as rs:
            rs.save(pd.DataFrame({"v": [1]}), "a")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "p").mkdir(), (tmp_path / "q").mkdir()
    (tmp_path / "p" / "1").touch(), (tmp_path / "q" / "2").touch()
    _exchange(tmp_path / "p", tmp_path / "q")              # the atomic swap commit() uses
    assert [f.name for f in (tmp_path / "p").iterdir()] == ["2"]


# --------------------------------------------------------------------------- table cache
def write_module(folder: Path, name: str, body: str):
    import importlib.util
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tables():
    rng = np.random.default_rng(0)
    return {"runs": pd.DataFrame({"accuracy": rng.random(20), "n": np.arange(20),
                                  "model": ["a", "b"] * 10, "ok": [True, False] * 10,
                                  "gap": [np.nan] + list(rng.random(19) / 3)}),
            "per_class": pd.DataFrame({"cls": ["x", "y"], "v": [1 / 3, 2 / 3]})}


def test_cached_tables_computes_once_and_reads_back_equal_frames(cache, capfd):
    calls = []

    def compute():
        calls.append(1)
        return tables()
    spec = {"model": "a", "fractions": [0.5, 1.0]}
    first = C.cached_tables("tab", spec, compute, code=(C.code_version,))
    C._VERIFIED.clear()
    again = C.cached_tables("tab", spec, compute, code=(C.code_version,))
    assert len(calls) == 1 and set(again) == {"runs", "per_class"}
    for name, df in tables().items():
        pd.testing.assert_frame_equal(first[name], again[name])          # hit == miss
        pd.testing.assert_frame_equal(again[name], df, check_dtype=False)  # == computed
    assert [str(t) for t in again["runs"].dtypes] == ["float64", "int64", "str", "bool", "float64"]
    (key,) = [k for kind, k in C.entries(cache) if kind == "tab"]
    meta = C.ArrayStore("tab").load(key)[1]
    assert meta["producers"] == ["diffred.core.codeversion:code_version"] and meta["spec"] == spec
    flip(C.ArrayStore("tab").path(key) / "runs.csv", 4)                  # damaged -> recomputed
    C._VERIFIED.clear()
    pd.testing.assert_frame_equal(C.cached_tables("tab", spec, compute, code=(C.code_version,))
                                  ["runs"], first["runs"])
    assert len(calls) == 2 and "is damaged" in capfd.readouterr().err
    C.cached_tables("tab", {**spec, "model": "b"}, compute)              # new spec: new entry
    assert len(calls) == 3


def test_code_version_ignores_docstrings_and_comments_and_changes_with_code(tmp_path):
    base = write_module(tmp_path, "v1", '''
        """Module docstring."""
        def f(x):
            """Docstring."""
            return x + 1
        ''')
    doc = write_module(tmp_path, "v2", '''
        """Another module docstring."""
        # a comment
        def f(x):
            """A rewritten docstring."""

            return (x +
                    1)   # formatting and a comment
        ''')
    code = write_module(tmp_path, "v3", '''
        def f(x):
            return x + 2
        ''')
    assert len(C.code_version(base.f)) == 16
    assert C.code_version(base.f) == C.code_version(doc.f)
    assert C.code_version(base) == C.code_version(doc)
    assert C.code_version(base.f) != C.code_version(code.f)
    assert C.code_version(base.f, code.f) == C.code_version(code.f, base.f)   # a set of code
    assert C.code_version(base.f, code.f) not in (C.code_version(base.f), C.code_version(code.f))
    charted = write_module(tmp_path, "v4", '''
        def f(x):
            return x + 1
        def f_chart(table):
            return "a restyled figure"
        ''')
    assert C.code_version(charted) == C.code_version(base)     # charts never change results
    with pytest.raises(ValueError, match="cannot read the source"):
        C.code_version(len)


def test_cached_tables_code_change_gives_a_new_key(cache, tmp_path):
    calls = []
    v1 = write_module(tmp_path, "p1", "def f():\n    return 1\n")
    v1_doc = write_module(tmp_path, "p2", 'def f():\n    """Doc."""\n    return 1\n')
    v2 = write_module(tmp_path, "p3", "def f():\n    return 2\n")

    def compute():
        calls.append(1)
        return {"t": pd.DataFrame({"a": [1]})}
    for producer in (v1, v1_doc, v2):
        C.cached_tables("tab", {"s": 1}, compute, code=(producer.f,))
    assert len(calls) == 2                                 # docstring: same key; code: new key


# --------------------------------------------------------------------------- diffred cache
def test_cache_verify_info_gc(cache, tmp_path, monkeypatch, capsys):
    from diffred.book.cli import main
    features = C.ArrayStore("features")
    current, old = {"version": ex.extract_version("vision"), "x": 1}, {"version": "0", "x": 1}
    for spec in (current, old):
        features.get_or_compute(spec, lambda: ({"X": np.ones(3)}, {}))
    damaged = C.ArrayStore("k")
    damaged.get_or_compute({"d": 1}, lambda: ({"X": np.ones(30)}, {}))
    flip(damaged.path(C.hash_key({"d": 1})) / "X.npy", 8)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "producer_mod.py").write_text("def f():\n    return 1\n")
    import producer_mod
    C.cached_tables("tab", {"s": 1}, lambda: {"t": pd.DataFrame({"a": [1]})},
                    code=(producer_mod.f,))
    shard = features.path(C.hash_key(current)).parent
    (shard / f".{'0' * 32}.tmp-{2**22 + 1}-abcd").mkdir()   # a killed writer's folder
    (shard / f".{'1' * 32}.trash-{os.getpid()}-abcd").mkdir()
    (tmp_path / "producer_mod.py").write_text("def f():\n    return 22\n")   # the code changes
    monkeypatch.delitem(sys.modules, "producer_mod")

    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "features" in out and "tab" in out and str(cache) in out
    assert main(["cache", "verify"]) == 0
    out = capsys.readouterr().out
    assert "4 entries" in out and "3 valid, 1 damaged and removed" in out
    assert not damaged.path(C.hash_key({"d": 1})).exists()
    assert main(["cache", "gc"]) == 0
    out = capsys.readouterr().out
    assert "version '0', current" in out and "code " in out and out.count(": leftover") == 2
    assert [kind for kind, _ in C.entries(cache)] == ["features"]
    assert features.load(C.hash_key(current)) is not None and not leftovers(cache)


def _sweep_key_after(tmp_path, name: str, edit=None) -> str:
    """code_version(sweep) of a copy of the package with ``edit(root)`` applied, computed in a
    fresh interpreter (the copy's sources are what inspect reads)."""
    import shutil
    import subprocess
    import sys
    root = tmp_path / name
    shutil.copytree(Path(diffred.__file__).parent, root / "diffred",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if edit:
        edit(root / "diffred")
    code = ("import diffred, sys; assert diffred.__file__.startswith(sys.argv[1]); "
            "from diffred.core.cache import code_version; "
            "from diffred.studies.diffuse.method import sweep; print(code_version(sweep))")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_a_sweep_key_follows_the_code_that_computes_it(tmp_path):
    """Editing chapter 1's report (a chart, a table formatter) leaves the sweep's key alone;
    editing the probe solver it calls, two modules away, changes it; so does a constant."""
    base = _sweep_key_after(tmp_path, "base")
    report = _sweep_key_after(tmp_path, "report", lambda p: (
        _edit(p / "studies/diffuse/report.py", "def _md_table(df: pd.DataFrame, spec=\".2f\")",
              "def _md_table(df: pd.DataFrame, spec=\".3f\")"),
        _edit(p / "studies/diffuse/report.py", "def accuracy_chart(",
              "def extra_chart():\n    return None\n\n\ndef accuracy_chart(")))
    solver = _sweep_key_after(tmp_path, "solver", lambda p: _edit(
        p / "core/_lbfgs.py", "    q, alpha = g.clone(), {}", "    q, alpha = g.clone() * 1.0, {}"))
    constant = _sweep_key_after(tmp_path, "constant", lambda p: _edit(
        p / "core/probe.py", "TOL = 3e-5", "TOL = 1e-5"))
    # storing is not computing: how the cache names its temporary folders, where files live
    storage = _sweep_key_after(tmp_path, "storage", lambda p: (
        _edit(p / "core/paths.py", 'return f"{HOST}@{os.getpid()}"', 'return f"{os.getpid()}@{HOST}"'),
        _edit(p / "core/cache.py", "FOREIGN_STALE_SECONDS = 24 * 3600", "FOREIGN_STALE_SECONDS = 3600")))
    assert report == base and storage == base
    assert solver != base and constant != base and solver != constant


def test_a_constant_read_through_an_import_is_part_of_the_key(tmp_path):
    """``from diffred.x import GRID`` then reading GRID: editing GRID where it is written changes
    the key of the code that reads it (chapter 2's task tables read the authors' percentage grid
    from its method module), and editing an unrelated constant there does not."""
    def key(name, edit=None):
        root = tmp_path / name
        import shutil
        shutil.copytree(Path(diffred.__file__).parent, root / "diffred",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (root / "diffred" / "core" / "_grid.py").write_text("GRID = (0.1, 0.5)\nOTHER = 1\n")
        (root / "diffred" / "core" / "_reader.py").write_text(
            "from diffred.core._grid import GRID as G\n\n\ndef f():\n    return len(G)\n")
        if edit:
            edit(root / "diffred" / "core" / "_grid.py")
        import subprocess
        import sys
        code = ("from diffred.core.codeversion import code_version; "
                "from diffred.core._reader import f; print(code_version(f))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()
    base = key("base")
    assert key("grid", lambda p: _edit(p, "GRID = (0.1, 0.5)", "GRID = (0.1, 0.6)")) != base
    assert key("other", lambda p: _edit(p, "OTHER = 1", "OTHER = 2")) == base


def test_gc_judges_another_hosts_temp_folders_by_age(tmp_path):
    """A cache shared by a cluster: a PID on another host means nothing here, so that host's
    temporary folder is kept while it may be live (24 h) and removed after; this host's are
    judged by their PID."""
    shard = tmp_path / "sweep" / "ab"
    shard.mkdir(parents=True)
    live_elsewhere = shard / f".{'a' * 32}.tmp-node17.cluster@{os.getpid()}-x1"
    dead_elsewhere = shard / f".{'b' * 32}.tmp-node17.cluster@{os.getpid()}-x2"
    dead_here = shard / f".{'c' * 32}.tmp-{C.writer_tag().split('@')[0]}@{2**22 + 3}-x3"
    alive_here = shard / f".{'d' * 32}.tmp-{C.writer_tag()}-x4"
    for folder in (live_elsewhere, dead_elsewhere, dead_here, alive_here):
        folder.mkdir()
    old = time.time() - C.FOREIGN_STALE_SECONDS - 60
    os.utime(dead_elsewhere, (old, old))
    removed = {Path(p).name for p, why in C.collect_garbage(tmp_path) if why == "leftover"}
    assert removed == {dead_elsewhere.name, dead_here.name}
    assert live_elsewhere.exists() and alive_here.exists()
