"""Every chapter runs end to end at quick scale and writes the tables its page promises.

Each table is checked for content — columns, value ranges, one row per expected cell — not only
for existence.  Marked ``slow``: ``make test-fast`` skips these.
"""
from __future__ import annotations

import io
import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from diffred import results
from diffred.book.chapter import chapters, quick_preset, resolve_parameters
from diffred.book.cli import run_chapter

pytestmark = pytest.mark.slow


def _in(values, low, high):
    values = pd.Series(values).dropna()
    return bool(((values >= low) & (values <= high)).all())


def _one_row_per(df: pd.DataFrame, keys: list[str]) -> bool:
    return not df.duplicated(keys).any()


def check_01(t: dict, p: dict):
    runs = t["probe_runs"]
    assert {"model", "weights", "dataset", "layer", "method", "fraction", "seed", "k", "dim",
            "accuracy", "full_accuracy", "train_subset", "code_version"} <= set(runs)
    assert runs.weights.notna().all() and _in(runs.accuracy, 0, 1)
    assert _one_row_per(runs, ["model", "dataset", "layer", "method", "fraction", "seed"])
    random = runs[runs.method == "random"]
    for model in p["models"]:
        for dataset in p["datasets"]:
            cell = random[(random.model == model) & (random.dataset == dataset)]
            assert len(cell) == len(p["fractions"]) * len(p["seeds"]), (model, dataset)
    assert (runs.k <= runs.dim).all()
    curve = t["accuracy_curve"]
    assert np.allclose(curve.ratio, curve.accuracy / curve.full_accuracy)
    dr = t["diffuse_redundancy"]
    assert len(dr) == len(p["models"]) * len(p["datasets"]) + \
        len(p["text_models"]) * len(p["text_datasets"])
    for d in p["dr_deltas"]:
        assert _in(dr[f"DR({d:g})"], 0, 1)
    cka = t["subset_cka"]
    assert len(cka) == len(p["models"]) * len(p["cka_sizes"]) * len(p["seeds"])
    assert _in(cka.cka, -0.2, 1.0 + 1e-9)
    cost = t["class_cost"]
    assert (cost.mean_class_drop <= cost.worst_class_drop + 1e-12).all()
    layers = set(t["layer_dr"].layer)
    assert layers == {"penultimate", *p["intermediate_layers"]}
    cmp = t["paper_vs_this_run"]
    assert cmp.this_run.notna().all() and (cmp.paper > 0).all()
    # the gap verdicts read paired-bootstrap intervals that contain their point, at each
    # backbone's largest training set (the learning curve's largest for its models)
    gaps = cmp[cmp.quantity.str.startswith("gap")]
    assert (gaps.lo <= gaps.this_run + 1e-12).all() and (gaps.this_run <= gaps.hi + 1e-12).all()
    assert set(gaps.verdict) <= {"within", "outside", "inconclusive"}
    lc = t["learning_curve"]
    for model in p["curve_models"]:
        assert gaps.set_index("model").n_train[model] == lc[lc.model == model].n_train.max()
    assert runs.converged.isin([0, 1, True, False]).all()
    at = runs[(runs.method == "random") & np.isclose(runs.fraction, 0.2)]
    assert at[["gap_lo", "gap_hi"]].notna().all(axis=None)


def check_02(t: dict, p: dict):
    summary = t["task_summary"]
    runs = sum(1 if task in ("ud_pos", "conll2000_chunk", "conll2003_ner")
               else len(p["sentence_features"]) for task in p["tasks"])
    assert len(summary) == runs * len(p["delta_pairs"])
    assert _one_row_per(summary, ["model", "dataset", "features", "delta_layer", "delta_neuron"])
    assert summary.near_chance.isin([True, False]).all() and _in(summary.majority_dev_accuracy, 0, 1)
    assert _in(summary.oracle_accuracy, 0, 1) and _in(summary.minimal_accuracy, 0, 1)
    assert (summary.minimal_k <= summary.neurons_after_cc).all()
    assert (summary.neurons_after_cc <= summary.neurons_after_ls).all()
    assert (summary.neurons_after_ls <= summary.neurons_total).all()
    general = t["general_redundancy"]
    assert len(general) == len(p["models"]) * len(p["thresholds"])
    for _, g in general.groupby("model"):
        assert _in(g.pct_redundant, 0, 100)
        assert (np.diff(g.sort_values("threshold").pct_redundant) >= 0).all()
    sim = t["layer_similarity"]
    assert np.allclose(sim[sim.layer_a == sim.layer_b].cka, 1.0) and _in(sim.cka, -1e-6, 1 + 1e-6)
    curves = t["selection_curves"]
    assert set(curves.method) == {"ranked", "random"} and _in(curves.accuracy, 0, 1)
    assert len(t["probe_cost"]) == 2 * runs
    sweep = t["task_cluster_sweep"]
    assert len(sweep) == runs * (len(p["thresholds"]) + 1) and _in(sweep.accuracy, 0, 1)
    cmp = t["paper_vs_run"]
    assert cmp["this run"].notna().all() and set(cmp.verdict) <= {"yes", "no", "inconclusive"}
    assert cmp.source.str.contains("Section").all()
    rand = curves[curves.method == "random"]
    assert (rand.accuracy_ci95.notna() == (p["n_random_subsets"] > 1)).all()
    assert _in(summary.probes_converged, 0, 1)


def check_03(t: dict, p: dict):
    curves = t["fraction_curves"]
    assert _one_row_per(curves, ["model", "dataset", "shots", "ranking", "k"])
    assert _in(curves.accuracy, 0, 1) and (curves.ci95 >= 0).all()
    assert set(curves.ranking) == {"oracle", "random"} and set(curves.shots) <= set(p["shots"])
    expected = np.where(curves.shots == 1, p["n_episodes"], p["n_episodes_high_shot"])
    assert (curves.n_episodes == expected).all()
    conf = t["confounders"]
    assert _one_row_per(conf, ["dim"]) and set(conf.effect) <= {
        "dropping helps", "no clear effect", "dropping hurts"}
    masks = t["soft_mask"]
    assert _one_row_per(masks, ["model", "dataset", "classifier", "shots", "method"])
    assert np.allclose(masks[masks.method == "no mask"].gain, 0)
    assert len(t["closing_summary"]) == len(p["models"]) * len(p["datasets"])
    # the 1% verdicts: an equivalence test whose 90% interval brackets the difference; the
    # fewest-shot cells carry the pool's spread where a half can serve them
    v = t["one_percent_verdict"]
    assert set(v.verdict) <= {"recovers", "above full", "below full", "inconclusive"}
    assert ((v.tost_lo <= v.difference) & (v.difference <= v.tost_hi)).all()
    spread = t["pool_spread"]
    assert (spread.pool_se >= 0).all() and set(spread.shots) == {min(p["shots"])}
    assert set(v[v.interval_over == "episodes and pool"].shots) <= {min(p["shots"])}
    cmp = t["paper_vs_run"]
    assert set(cmp.verdict) <= {"yes", "no", "inconclusive"} and cmp.rule.notna().all()


def check_04(t: dict, p: dict):
    from diffred.studies.transfer.paper import PAPER_FINDINGS
    cmp = t["paper_vs_run"]
    assert len(cmp) == len(PAPER_FINDINGS) and cmp.source.str.len().gt(0).all()
    measured = cmp.filter(like=": measured").astype(str)
    assert not measured.apply(lambda col: col.str.contains(r"\bnan\b")).any().any()  # "no CI"
    for arm in ("controlled", "real"):
        assert set(cmp[f"{arm}: reproduced"]) <= {"yes", "no", "inconclusive", "—"}
    acc = t["accuracy_controlled"]
    n_rules = 1 + ("controlled" in p["official_lr_arms"])
    assert len(acc) == len(p["targets"]) * 2 * len(p["seeds"]) * n_rules
    assert _in(acc.accuracy, 0, 1) and _one_row_per(acc, ["lr_rule", "dataset", "init", "seed"])
    sel = t["lr_selection_controlled"]
    assert len(sel) == len(p["targets"]) * 2 * len(p["lr_grid"])
    assert sel.groupby(["dataset", "init"]).chosen.sum().eq(1).all()
    chosen = sel[sel.chosen].set_index(["dataset", "init"]).lr
    selected = acc[acc.lr_rule == "selected"].groupby(["dataset", "init"]).lr.first()
    assert (selected == chosen.reindex(selected.index)).all()
    for arm in ("controlled", "real"):
        interp = t[f"interpolation_{arm}"]
        assert interp.groupby(["pair", "seeds"])["lambda"].count().min() >= p["interpolation_points"]
        assert (interp.barrier >= 0).all() and _in(interp.accuracy, 0, 1)
        assert set(interp.bn) == {"re-estimated", "interpolated"}     # both BN treatments
        crit = t[f"criticality_{arm}"]
        assert (crit.criticality >= 0).all() and _in(crit.alpha.dropna(), 0, 1)
        assert crit.groupby("init").seed.nunique().eq(len(p["seeds"])).all()   # every run
        if arm in p["common_rate_arms"]:
            assert t[f"distances_common_{arm}"].lr.nunique() == 1
            assert t[f"criticality_common_{arm}"].seed.nunique() == len(p["seeds"])
        assert (t[f"distances_{arm}"].l2_distance >= 0).all()
        assert _in(t[f"cka_{arm}"].cka, -1e-6, 1 + 1e-6)
    blocks = t["block_shuffle_controlled"]
    assert set(blocks.block) == set(p["blocks"]) and set(blocks.seed) == set(p["seeds"])
    ckpt = t["checkpoints_controlled"]
    assert set(ckpt.checkpoint_epoch) == set(p["save_epochs"])
    assert ckpt.epochs_to_90.between(1, p["finetune_epochs"]).all()
    assert ckpt.seed.nunique() == len(p["checkpoint_seeds"])
    assert set(t["interpolation_real"].pair) == set(p["real_interpolation_types"])


CHECKS = {"01": check_01, "02": check_02, "03": check_03, "04": check_04}


@pytest.mark.parametrize("chapter", list(chapters()))
def test_chapter_runs_at_quick_scale_and_writes_its_tables(chapter, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRED_RESULTS", str(tmp_path / "results"))
    out = run_chapter(chapter, {"quick": True}, tmp_path / f"{chapter}.ipynb")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    folder = tmp_path / "results" / chapter
    tables = {f.stem: pd.read_csv(f) for f in sorted(folder.glob("*.csv"))}
    assert tables, f"chapter {chapter} wrote no table"
    for name in tables:
        provenance = json.loads((folder / f"{name}.json").read_text())
        assert provenance["table"] == name and provenance["rows"] == len(tables[name])
    loaded = results.load(chapter, root=tmp_path / "results")     # the reader's way back
    assert set(loaded) == set(tables) and loaded.provenance["commit"]
    for name, table in tables.items():     # the same values; CSV reads "" as NaN, Parquet keeps it
        back = pd.read_csv(io.StringIO(loaded[name].to_csv(index=False)))
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
    params = resolve_parameters(chapter, {"quick": True})
    assert quick_preset(chapters()[chapter])
    CHECKS[chapter[:2]](tables, params)


def test_two_concurrent_runs_of_one_chapter_finish_with_identical_tables(tmp_path):
    """Two `diffred run` of a chapter at once, on one cold cache: both finish, same tables
    (an entry computed twice is fine; a torn or mixed one is not)."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "DIFFRED_CACHE": str(tmp_path / "cache")}
    runs = []
    for i in (1, 2):
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "diffred.book.cli", "run", "03", "-p", "quick", "True",
             "-o", str(tmp_path / f"run{i}.ipynb")],
            env={**env, "DIFFRED_RESULTS": str(tmp_path / f"results{i}")},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for run in runs:
        _, err = run.communicate(timeout=900)
        assert run.returncode == 0, err[-2000:]
    first = tmp_path / "results1" / "03_fewshot_soft_mask"
    second = tmp_path / "results2" / "03_fewshot_soft_mask"
    names = sorted(f.name for f in first.glob("*.csv"))
    assert names and names == sorted(f.name for f in second.glob("*.csv"))
    for name in names:
        pd.testing.assert_frame_equal(pd.read_csv(first / name), pd.read_csv(second / name))
