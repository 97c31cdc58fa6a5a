"""The package as a reader installs it: a wheel built by ``python -m build`` (sdist, then the
wheel from the sdist), installed into a new venv outside the checkout, lists the chapters and
runs chapter 1 at quick scale.

Offline, the new venv borrows its third-party packages (torch, timm, the offline weights: 5 GB)
from this venv through a ``.pth`` path line — which does not activate this venv's editable
install of diffred — so ``diffred`` itself is the wheel's copy (the test checks where it was
imported from).  Marked ``slow``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from diffred.core.paths import PROJECT_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, PROJECT_DIR],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("diffred_book-*.whl"))


def test_sdist_and_wheel_carry_the_book(wheel):
    sdist = next(wheel.parent.glob("diffred_book-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"chapters/01_diffuse_redundancy.md", "_config.yml", "LICENSE", "CITATION.cff"} <= names
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    pages = {f"diffred/_book/chapters/{p.name}" for p in (PROJECT_DIR / "chapters").glob("*.md")}
    assert pages and pages <= names
    assert {"diffred/_book/_config.yml", "diffred/_book/_toc.yml", "diffred/_book/intro.md",
            "diffred/_book/chapters/references.bib"} <= names
    assert not [n for n in names if n.startswith(("tests/", "chapters/"))]


def test_wheel_in_a_new_venv_runs_chapter_1(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                    "--no-index", wheel], check=True, timeout=300)
    away = tmp_path / "elsewhere"                    # not the checkout, not beside it
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIFFRED_RESULTS")}
    where = subprocess.run([python, "-c", "import diffred; print(diffred.__file__)"], cwd=away,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    listed = subprocess.run([venv / "bin" / "diffred", "chapters"], cwd=away, env=env,
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and "01_diffuse_redundancy" in listed.stdout, listed.stderr
    done = subprocess.run([venv / "bin" / "diffred", "run", "01", "-p", "quick", "True"],
                          cwd=away, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (away / "01_diffuse_redundancy.out.ipynb").exists()
    assert (away / "diffred-results" / "01_diffuse_redundancy" / "probe_runs.parquet").exists()
