"""A researcher's own model by plugin and own data by path, through a whole chapter.

A tiny plugin package — real ImageNet weights of EfficientNet-Lite0 saved as the researcher's
own timm checkpoint, registered under the entry-point group ``diffred.models`` — is installed
by pip (no build isolation, offline) into a folder put on ``PYTHONPATH``, which papermill's
kernel inherits; chapter 1 then runs at quick scale on it and on an image folder the test lays
out.  Marked ``slow``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from diffred.book.results import read_table

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def install_plugin(tmp_path: Path, signs: Path) -> Path:
    """Build and install the plugin package; returns the folder it is installed in."""
    import torch

    from diffred.core.models import load_model
    pkg = tmp_path / "demo-plugin"
    (pkg / "diffred_demo").mkdir(parents=True)
    torch.save(load_model("efficientnet_lite0").module.state_dict(),
               pkg / "diffred_demo" / "weights.pth")
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "diffred-demo-plugin"
        version = "0.1"
        [project.entry-points."diffred.models"]
        demo_lite0 = "diffred_demo:demo_lite0"
        broken = "diffred_demo:no_such_object"
        [project.entry-points."diffred.datasets"]
        demo_signs = "diffred_demo:demo_signs"
        [tool.setuptools.package-data]
        diffred_demo = ["weights.pth"]
        """))
    (pkg / "diffred_demo" / "__init__.py").write_text(textwrap.dedent(f'''
        """EfficientNet-Lite0's ImageNet weights as a researcher's own timm checkpoint, and a
        dataset with a loader of its own."""
        from pathlib import Path
        from diffred.core import datasources
        from diffred.core.datasets import DatasetSpec
        from diffred.core.models import timm_checkpoint
        demo_lite0 = timm_checkpoint("demo_lite0", "tf_efficientnet_lite0",
                                     lambda: Path(__file__).with_name("weights.pth"),
                                     source="diffred's plugin test", licence="Apache-2.0")
        def demo_signs():
            folder = "imagefolder:{signs}"
            return DatasetSpec("demo_signs", "image", "hand signs", "the test's folder", "Apache-2.0",
                               "", lambda split: datasources.load_imagefolder(folder, split),
                               ("train", "test"))
        '''))
    site = tmp_path / "site"
    subprocess.run([BIN / "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", site, pkg], check=True, timeout=300)
    return site


def test_plugin_model_and_image_folder_run_chapter_1(tmp_path, image_folder):
    folder = image_folder(tmp_path / "signs", per_class=10)
    site = install_plugin(tmp_path, folder)
    data = f"imagefolder:{folder}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "DIFFRED_RESULTS": str(tmp_path / "results")}
    assets = subprocess.run([BIN / "diffred", "assets"], env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    assert "demo_lite0" in assets.stdout and "model/vision (plugin)" in assets.stdout
    assert "demo_signs" in assets.stdout and "data/image (plugin)" in assets.stdout
    # a broken plugin is one line on stderr, and everything else still works
    assert "plugin 'broken'" in assets.stderr and "failed to load" in assets.stderr
    args = ["models=demo_lite0", f"datasets={data},demo_signs", "curve_models=demo_lite0",
            "curve_n_per_class=[4,8]", "baseline_models=demo_lite0", f"baseline_datasets={data}",
            "layer_models=demo_lite0", f"layer_datasets={data}", "n_test_per_class=2"]
    cmd = [BIN / "diffred", "run", "01", "-p", "quick", "True", "-o", tmp_path / "01.ipynb"]
    for a in args:
        cmd += ["-p", *a.split("=", 1)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = read_table("probe_runs", "01_diffuse_redundancy", root=tmp_path / "results")
    vision = runs[runs.model == "demo_lite0"]
    assert set(vision.dataset) == {data, "demo_signs"} and vision.accuracy.between(0, 1).all()
    full = vision[(vision.method == "random") & (vision.fraction == 1.0)]
    assert full.accuracy.mean() > 1 / 3             # real weights on real images: above chance
    curve = read_table("learning_curve", "01_diffuse_redundancy", root=tmp_path / "results")
    assert isinstance(curve, pd.DataFrame) and set(curve.model) == {"demo_lite0"}
