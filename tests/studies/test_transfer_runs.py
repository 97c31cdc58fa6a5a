"""Chapter 4's page verbs without training: :func:`run_arm`'s steps and saved tables (on
recording stand-ins for the experiment verbs), and the findings text and summary tables."""

import pandas as pd
import pytest

from diffred.core.training import TrainConfig
from diffred.studies.transfer import method as M
from diffred.studies.transfer import report as F
from diffred.studies.transfer import runs as R


@pytest.fixture
def recorded(monkeypatch):
    """Replace the verbs :func:`run_arm` calls by stand-ins that log (name, args, kwargs)."""
    log = []

    def stand_in(name, result):
        def call(*args, **kwargs):
            log.append((name, args, kwargs))
            return result(*args, **kwargs)
        monkeypatch.setattr(R, name, call)

    stand_in("target_sets", lambda names, *a: {n: (f"{n}-train", f"{n}-test") for n in names})
    stand_in("select_learning_rates", lambda *a, **k: pd.DataFrame(
        {"dataset": "t2", "init": ["P-T", "RI-T"] * 2, "lr": [0.01, 0.01, 0.1, 0.1],
         "val_accuracy": [0.9, 0.1, 0.6, 0.6]}))
    stand_in("choose_learning_rates", lambda table: {"chosen": True})
    stand_in("finetune_grid", lambda arch, data, init, lrs, *a: {"lrs": lrs})
    stand_in("accuracy_table", lambda runs, arm, model, rule="selected": pd.DataFrame(
        {"arm": [arm], "model": model, "lr_rule": rule}))
    stand_in("curves_table", lambda runs, arm: pd.DataFrame({"arm": [arm]}))
    stand_in("block_shuffle_sweep", lambda *a, **k: {})
    stand_in("block_table", lambda runs, arm: pd.DataFrame({"arm": [arm]}))
    stand_in("subset", lambda data, n, seed: f"{data}[{n}]")
    stand_in("basin_analysis", lambda *a, **k: {n: pd.DataFrame({"x": [0]}) for n in
                                               ("cka", "distances", "interpolation",
                                                "criticality")})
    stand_in("distance_table", lambda runs, target: pd.DataFrame({"x": [0]}))
    stand_in("criticality_table", lambda runs, target, images, **k: pd.DataFrame({"x": [0]}))
    return log


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("common", [False, True])
def test_run_arm_runs_the_steps_in_order_and_saves_every_table(recorded, official, common):
    saved = []
    arm = R.run_arm(
        "real", "arch", "pretrained", "model-id", ["t1", "t2"], 10, 5, 32,
        TrainConfig(epochs=1), [0.01, 0.1], seeds=[0, 1], selection_seed=3,
        validation_fraction=0.2, official=official, analysis_target="t2", blocks=[32, 1],
        block_seeds=[0], analysis_images=7, interpolation_points=5, interpolation_pairs=1,
        interpolation_types=["P-T/P-T"], criticality_alphas=[0.0, 1.0],
        criticality_sigmas=[0.01], criticality_epsilon=0.05, common=common,
        extra_columns={"pretraining_run": "src"}, save=lambda t, n: saved.append(n))
    steps = [name for name, *_ in recorded]
    grids = ["finetune_grid", "accuracy_table"] * (2 if official else 1)
    at_common = ["finetune_grid", "distance_table", "criticality_table"] * common
    assert steps == ["target_sets", "select_learning_rates", "choose_learning_rates", *grids,
                     "curves_table", "block_shuffle_sweep", "block_table", "subset",
                     "basin_analysis", *at_common]
    tables = ["lr_selection", "accuracy", "curves", "block_shuffle", "cka", "distances",
              "interpolation", "criticality"] + ["distances_common", "criticality_common"] * common
    assert saved == [f"{n}_real" for n in tables]
    if common:   # one rate for both inits: the best mean over P-T and RI-T (0.01: 0.5, 0.1: 0.6)
        assert arm.common["lr"] == 0.1
        assert recorded[-3][1][3] == {("t2", "P-T"): 0.1, ("t2", "RI-T"): 0.1}
    else:
        assert arm.common is None
    assert list(arm.acc.lr_rule) == ["selected"] + ["official"] * official
    assert (arm.acc.pretraining_run == "src").all() and len(arm.selected) == 1
    _, args, kwargs = recorded[steps.index("basin_analysis")]
    assert args[:5] == ({"lrs": {"chosen": True}}, "t2", "t2-train", "t2-test", 5)
    assert kwargs["criticality"] == {"alphas": [0.0, 1.0], "sigmas": [0.01], "epsilon": 0.05}
    assert kwargs["criticality_images"] == arm.criticality_images == "t2-train[7]"
    if official:                                         # the official pair for every target
        assert recorded[5][1][3] == {(t, i): lr for t in ("t1", "t2")
                                     for i, lr in (("P-T", 0.02), ("RI-T", 0.1))}


def _accuracy(arm, gaps):
    return pd.DataFrame([{"arm": arm, "lr_rule": "selected", "dataset": t, "init": i, "seed": s,
                          "lr": 0.1, "accuracy": 0.5 + (g if i == "P-T" else 0) + 0.01 * s,
                          "epochs_to_90": 2.0}
                         for t, g in gaps.items() for i in ("P-T", "RI-T") for s in (0, 1)])


def test_findings_text_and_closing_summary():
    real, ctrl = _accuracy("real", {"a": 0.1, "b": -0.1}), _accuracy("controlled", {"a": 0.2})
    comparison = pd.DataFrame({"finding": ["CKA", "l2", "ckpt"],
                               "real: reproduced": ["yes", "no", "—"],
                               "controlled: reproduced": ["yes", "inconclusive", "yes"]})
    text = F.findings_text({"real": real, "controlled": ctrl}, 0.7, comparison, quick=True)
    assert text == (
        "In the real arm, fine-tuning from pretrained weights (P-T) has the higher mean test "
        "accuracy on 1 of 2 target(s). In the controlled arm, fine-tuning from pretrained weights "
        "(P-T) has the higher mean test accuracy on 1 of 1 target(s). The controlled source "
        "model reaches 70.0% on CIFAR-10. Of the paper's findings checked in the real arm, 1 of "
        "2 reproduce (CKA), 1 do not (l2) and 0 are inconclusive at this scale. Of the paper's "
        "findings checked in the controlled arm, 2 of 3 reproduce (CKA, ckpt) and 1 are "
        "inconclusive at this scale (l2). *(Smoke-test scale: `quick = True`; these numbers "
        "are not the book's.)*")
    summary = M.closing_summary([ctrl, real])
    assert list(summary.columns) == ["arm", "lr_rule", "dataset", "init", "lr", "accuracy", "ci95",
                                     "epochs_to_90", "seeds"]
    assert len(summary) == 6 and (summary.seeds == 2).all()
    assert list(F.reader_summary(summary).columns) == [
        "arm", "rates", "target", "init", "lr", "test accuracy", "± 95%", "epochs to 90%",
        "seeds"]
