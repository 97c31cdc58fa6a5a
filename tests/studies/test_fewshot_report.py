"""Chapter 3's page verbs (diffred.studies.fewshot.report prose and tables, runs, paper) on
hand-built tables; the cached experiments are replaced by recorders."""
import pandas as pd
import pytest

from diffred.book.ledger import rules as ledger_rules
from diffred.studies.fewshot import method as fewshot
from diffred.studies.fewshot import paper, report, runs


def test_curve_fractions_and_budgets():
    assert runs.curve_fractions([0.2, 0.005, 0.2]) == [0.005, 0.01, 0.2, 1.0]
    assert runs.by_cost([1, 5, 10], 2000, 600) == [([1], 2000), ([5, 10], 600)]
    assert runs.by_cost([5], 2000, 600) == [([5], 600)]
    assert runs.by_cost([1], 2000, 600) == [([1], 2000)]


def test_runs_pass_the_page_arguments_through(monkeypatch):
    calls = []
    for name in ("fraction_curves", "soft_mask_comparison"):
        monkeypatch.setattr(fewshot, name, lambda *a, _n=name, **k: calls.append((_n, a, k))
                            or pd.DataFrame({"x": [len(calls)]}))
    pools = {("m", "a"): "pa", ("m", "b"): "pb"}
    out = runs.run_fraction_curves(pools, [1, 5, 10], [0.01, 1.0], n_way=5, n_query=15,
                                   n_episodes=20, n_episodes_high_shot=6, seed=0)
    assert list(out.x) == [1, 2, 3, 4]
    assert [(a[0], a[1], k["n_episodes"]) for _, a, k in calls] == [
        ("pa", [1], 20), ("pa", [5, 10], 6), ("pb", [1], 20), ("pb", [5, 10], 6)]
    calls.clear()
    runs.run_mask_comparison({k: ("sel", v) for k, v in pools.items()}, [1],
                             {"shrink": 0.1, "topk_fraction": 0.05}, n_way=5, n_query=15,
                             n_episodes=20, n_episodes_high_shot=6, seed=0)
    assert [a[0] for _, a, _ in calls] == ["pa", "pb"]
    assert calls[0][2]["shrinks"] == [0.1] and calls[0][2]["topk_fractions"] == [0.05]


@pytest.mark.parametrize("gains, ending", [
    ([0.05, 0.01, -0.03], ": the gain at K=1 fades as $K$ grows and turns into a loss"),
    ([0.05, 0.05, 0.05], ": the gain at K=1 does not clearly fade by K=20."),
])
def test_simulation_text(gains, ending):
    sim = pd.DataFrame(dict(shots=[1, 5, 20], gain=gains, gain_ci95=[0.005] * 3))
    text = report.simulation_text(sim, figures="Figures X")
    assert text.startswith("In the simulation, dropping the confounders changes accuracy by "
                           f"{100 * gains[0]:+.1f} ± 0.5 points at K=1, ")
    assert ending in text and text.endswith("is what Figures X measure.")
    assert "{numref}`Figures %s <fig-ch3-curves>`" in report.simulation_text(sim)


def test_episodes_note_names_unserved_shots():
    curves = pd.DataFrame(dict(model="m", dataset=["a", "a", "b"], shots=[1, 5, 1]))
    note = report.episodes_note(curves, [1, 5], 2000, 600, 15)
    assert note.endswith("are left out: m/b: K=[5].")
    assert report.episodes_note(curves[curves.dataset == "a"], [1, 5], 2000, 600,
                                15).endswith("left out: none.")


def test_mask_texts_and_reader_table():
    masks = pd.DataFrame([dict(model="m", dataset=d, classifier=c, shots=1, method=me, accuracy=0.5,
                               ci95=0.01, gain=0.0 if me == "no mask" else g, gain_ci95=0.01,
                               shrink=0.3)
                          for d, g in (("a", 0.03), ("b", -0.02)) for c in ("lr", "nc")
                          for me in fewshot.METHODS])
    text = report.mask_text(masks, {"shrink": 0.3, "topk_fraction": 0.05})
    assert text.startswith("Selected on held-out images: shrink = 0.3, topk_fraction = 0.05.")
    assert "LR 1-shot accuracy by -2.0 to +3.0 points (1 of 2 cells significantly positive, " \
           "1 negative)" in text
    table = report.mask_reader_table(masks)
    assert list(table.columns) == ["backbone", "dataset", "clf.", "K", "no mask", "aug. views",
                                   "hard top-k", "soft (support)", "soft (oracle)"]
    verdict = pd.DataFrame(dict(model="m", dataset=["a", "b"], n_way=5, shots=1,
                                difference=[0.001, -0.03], difference_ci95=[0.002, 0.002],
                                margin=0.01, verdict=["recovers", "below full"],
                                reproduced=[True, False]))
    conf = pd.DataFrame(dict(q_value=[0.01, 0.5], p_value=[0.001, 0.4], delta_accuracy=[1e-3, 0.0],
                             within_var=[2.0, 1.0], centroid_dist=[0.1, 0.2]))
    found = report.findings_text(verdict, verdict, conf, masks,
                                 {"shrink": 0.3, "topk_fraction": 0.05}, 0.05, quick=True)
    assert "or beats it in 1 of 2 backbone/dataset pairs in 5-way episodes (1 recover, 0 above, " \
           "1 below, 0 inconclusive)" in found
    assert "Of 2 dimensions, 1 are confounders" in found and "Fisher's exact test" in found
    assert found.endswith("these numbers are not the book's.)*")
    sim = pd.DataFrame(dict(shots=[1, 20], gain=[0.05, -0.01], gain_ci95=[0.01, 0.01]))
    table = paper.paper_vs_run(verdict, conf, sim, masks, 0.05)
    assert list(table["claim (paper)"]) == list(paper.CLAIMS)
    assert list(table.columns) == ["claim (paper)", "where", "this run", "interval (95%)",
                                   "verdict", "rule"]
    assert (table["where"] == paper.SOURCE).all()
    assert set(table.rule) <= set(ledger_rules())
    assert table["this run"].iloc[0].startswith("1 shot: top 1% recovers (±1 point) or beats "
                                                "all dims in 1/2")
    assert table.verdict.iloc[0] == "yes"                  # a tight cell inside the margin
    assert table.verdict.iloc[1] == "inconclusive"         # one shot count: no slope
    assert paper.PAPER_FRACTION in runs.curve_fractions([0.5])
    text = report.fade_text(paper.fade_contrast(verdict))
    assert "inconclusive" in text
