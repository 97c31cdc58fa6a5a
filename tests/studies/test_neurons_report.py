"""Chapter 2's page verbs (diffred.studies.neurons.report / runs / paper) on hand-built tables."""
import numpy as np
import pandas as pd

from diffred.book.chapter import resolve_parameters
from diffred.studies.neurons import paper, report, runs
from diffred.studies.neurons.method import DELTAS, PERCENTAGES


def _summary(finetuned=True):
    rows = [("ud_pos", "pretrained, last sub-token", False), ("sst2", "fine-tuned, [CLS]", False),
            ("mrpc", "fine-tuned, [CLS]", True)]
    df = pd.DataFrame([dict(model="m", dataset=d, features=f, near_chance=nc, delta_layer=1,
                            delta_neuron=1, oracle_accuracy=0.9, majority_dev_accuracy=0.5,
                            minimal_pct=0.5, minimal_accuracy=0.88, pct_of_oracle=98.0,
                            delta_resolved=True)
                       for d, f, nc in rows])
    if finetuned:
        df["finetuned_accuracy"] = [np.nan, 0.8, 0.6]
    return df


def _sweep():
    return pd.DataFrame([dict(model="m", dataset=d, features=f, threshold=t, pct_redundant=p,
                              accuracy=0.85, corr_rows=100)
                         for d, f in [("ud_pos", "pretrained, last sub-token"),
                                      ("mrpc", "fine-tuned, [CLS]")]
                         for t, p in [(-1.0, 0.0), (0.1 + 0.2, 40.0)]])


def test_findings_reads_the_tables():
    redundancy = pd.DataFrame(dict(model="m", threshold=[0.2, 0.3], pct_redundant=[10.0, 20.0],
                                   neurons=100, rows=50))
    text = report.findings(redundancy, _summary(), _sweep(), 0.3, [1, 1], quick=True)
    assert text.startswith("At clustering threshold c = 0.3, 20% of m's 100 neurons")
    assert "40–40% are redundant at c = 0.3" in text            # mrpc (near chance) left out
    assert "For the 2 of 3 model × task × feature rows" in text
    assert "Near chance (left out): mrpc (fine-tuned, [CLS])." in text
    assert "reach 0.800 on sst2, 0.600 on mrpc (test)." in text
    assert text.endswith("these numbers are not the book's.)*")
    assert "Fine-tuned" not in report.findings(redundancy, _summary(False), _sweep(), 0.3, [1, 1])


def test_table_verbs_return_reader_table_arguments():
    df, columns, rename, digits = report.closing_table(_summary(), _sweep())
    assert columns[0] == "task" and digits == 3 and rename["pct_redundant"] == "% redundant (c=0.3)"
    assert df.pct_redundant.tolist()[0] == 40.0 and np.isnan(df.pct_redundant.tolist()[1])
    assert report.finetuned_table(_summary(False)) is None
    assert len(report.finetuned_table(_summary())[0]) == 2
    assert report.task_table(_summary())[0].task.iloc[0] == "m · ud_pos · pretrained, last sub-token"
    kept = pd.DataFrame(dict(model="m", dataset="ud_pos", features="pretrained, last sub-token",
                             selected_layer=1, layer=[0, 1], neurons_kept=[3, 4]))
    view = report.kept_layers_view(kept, _summary().assign(selected_layer=1), (1, 1))
    assert view.columns.tolist() == ["task", "L0", "L1"] and view.iloc[0, 1:].tolist() == [3, 4]
    sim = pd.DataFrame(dict(model="m", layer_a=[0, 0, 1, 1], layer_b=[0, 1, 0, 1],
                            cka=[1.0, 0.5, 0.5, 1.0]))
    assert report.cka_by_gap(sim).loc[1, "m"] == 0.5


def test_chapter_tasks_passes_the_parameters_to_run_tasks(monkeypatch):
    calls = []
    monkeypatch.setattr(runs, "run_tasks", lambda model_tasks, **kw: calls.append((model_tasks, kw)))
    params = resolve_parameters("02_transformer_redundancy", {})
    runs.chapter_tasks(**params)
    model_tasks, kw = calls[0]
    assert model_tasks == {m: params["mpnet_tasks"] if m == "mpnet_base" else params["tasks"]
                           for m in params["models"]}
    assert kw["percentages"] == tuple(params["percentages"] or PERCENTAGES)
    assert kw["finetune_epochs"] == params["tune_epochs"]
    assert kw["deltas"] == params["delta_pairs"] and kw["sweep_thresholds"] == params["thresholds"]


def test_paper_constants_are_sourced_and_are_the_pipelines():
    table = paper.constants_table()
    assert table.source.str.len().gt(0).all() and len(table) == len(paper.CLAIMS) + 3
    assert paper.PROTOCOL["percentages"][0] == PERCENTAGES and len(PERCENTAGES) == 27
    assert paper.PROTOCOL["deltas"][0] == DELTAS
    general = pd.DataFrame(dict(model="m", threshold=[0.3], pct_redundant=[40.0], rows=[100],
                                dataset="ud_pos"))
    table = paper.paper_vs_run(general, _summary().assign(pct_removable=99.5), _sweep(), 0.3)
    assert list(table.paper) == ["85", "≥ 92", "≥ 97 / ≤ 10"]
    assert table.source.str.startswith(paper.SOURCE).all()
    assert table.source.str.contains("Section").all()
