"""The numbers chapter 2 takes from Dalvi et al. (EMNLP 2020) and the rules that set them beside
this run's (literature constants, not measured here).

:data:`CLAIMS` — the abstract's four claims (BERT-base and XLNet-base), as bounds;
:data:`PROTOCOL` — the authors' protocol constants the book follows, each with the file of the
official code it comes from; :func:`constants_table` — all of them, one row each;
:func:`paper_vs_run` — the claims next to this run's aggregates, by the rules of
:data:`TASK_RULES`.

The paper's per-task tables (oracle, selected layer, neurons after LS and CC, minimal set for
BERT and XLNet) could not be read from any stored text, so no per-task number is quoted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from diffred.studies.neurons.method import DELTAS, PERCENTAGES, usable, usable_sweep

PAPER = ("Dalvi, Sajjad, Durrani and Belinkov, 'Analyzing Redundancy in Pretrained Transformer "
         "Models', EMNLP 2020")
#: where the claims are stated (the ``source`` column of :func:`paper_vs_run`)
SOURCE = "EMNLP 2020 Abstract"
REPO = "fdalvi/analyzing-redundancy-in-pretrained-transformer-models@885bfe5"

#: the abstract's claims (BERT-base and XLNet-base), in % — bounds, read as such below
CLAIMS = {"general_pct_redundant": 85.0, "task_pct_removable": 92.0,
          "pct_of_oracle": 97.0, "pct_neurons_at_97": 10.0}
#: the abstract's words for each claim
CLAIM_TEXT = {
    "general_pct_redundant": "85% of the neurons across the network are redundant",
    "task_pct_removable": "at least 92% of them can be removed when optimizing towards a "
                          "downstream task",
    "pct_of_oracle": "[a transfer procedure] which maintains 97% performance",
    "pct_neurons_at_97": "while using at-most 10% of the original neurons",
}

#: protocol constants of the official code that the book follows: name -> (value, source).
#: The pipeline's own copies (:data:`~diffred.studies.neurons.method.PERCENTAGES`,
#: :data:`~diffred.studies.neurons.method.DELTAS`) are the values listed here.
PROTOCOL = {
    "percentages": (PERCENTAGES, f"{REPO}:experiments/labeling/run_pipeline_all.py "
                                 "(run_neuron_selection: the minimal-set grid, fractions of all "
                                 "neurons)"),
    "deltas": (DELTAS, f"{REPO}:experiments/labeling/run_pipeline_all.py (performance_deltas: "
                       "[(3, 1), (2, 1), (1, 1)])"),
    "threshold": (0.3, f"{REPO}:experiments/labeling/run_pipeline_all.py (clustering_thresholds: "
                       "[-1, 0.3]); experiments/cluster_analysis.py ('clustering-0.30')"),
}

#: how each task-level claim is read off this run's summary rows at one δ pair, over the tasks
#: with usable signal (:func:`~diffred.studies.neurons.method.usable`): (claim, row label, summary
#: column, aggregate over tasks, decimals).  The claims are bounds ("at least 92%", "at most
#: 10%"), so the aggregate is the task that comes closest to breaking them.
TASK_RULES = (
    ("task_pct_removable", "% neurons removable per task (min, δ={delta})", "pct_removable",
     "min", 1),
    ("pct_of_oracle", "% of oracle accuracy kept (min, δ={delta})", "pct_of_oracle", "min", 1),
    ("pct_neurons_at_97", "% of neurons used (max, δ={delta})", "minimal_pct", "max", 2),
)


def constants_table() -> pd.DataFrame:
    """Every paper constant used by the book, one row each: kind, name, value, source."""
    rows = [("claim", name, value, f"{PAPER}, Abstract: '{CLAIM_TEXT[name]}'")
            for name, value in CLAIMS.items()]
    rows += [("protocol", name, str(value), source) for name, (value, source) in PROTOCOL.items()]
    return pd.DataFrame(rows, columns=["kind", "name", "value", "source"])


def paper_vs_run(general: pd.DataFrame, summary: pd.DataFrame, sweep: pd.DataFrame,
                 threshold: float = 0.3, delta=(1, 1)) -> pd.DataFrame:
    """The paper's abstract-level claims next to this run's measurements.

    One row per claim and model; task aggregates are bounds over the tasks with usable signal
    (the paper's claims are bounds: "at least 92%", "at most 10%"; :data:`TASK_RULES`), the
    count of excluded tasks alongside.

    Parameters
    ----------
    general : DataFrame
        :func:`~diffred.studies.neurons.runs.general_tables` curves of every model (columns
        model, threshold, pct_redundant, rows, dataset).
    summary, sweep : DataFrame
        :func:`~diffred.studies.neurons.runs.run_tasks` ``summary`` and ``sweep`` tables.
    threshold : float
        The clustering threshold c compared (general redundancy: the nearest one measured).
    delta : pair of float
        ``(δ_L, δ_N)`` of the summary rows compared.

    Returns
    -------
    DataFrame
        Columns claim, model, paper, this run, tasks, source.
    """
    rows = []
    for model, g in general.groupby("model"):
        at = g.iloc[(g.threshold - threshold).abs().argmin()]
        rows.append({"claim": f"% neurons redundant overall (c={threshold:g}, "
                              f"{int(at.rows)} words of {at.dataset})", "model": model,
                     "paper": CLAIMS["general_pct_redundant"],
                     "this run": round(float(at.pct_redundant), 1), "tasks": "—"})
    if len(sweep):
        sw = sweep[np.isclose(sweep.threshold, threshold)]
        for model, g in sw.groupby("model"):
            ok = usable_sweep(g, summary)
            if not len(ok):
                continue
            rows.append({"claim": f"% neurons redundant per task (c={threshold:g}, min over "
                                  f"tasks)", "model": model,
                         "paper": CLAIMS["general_pct_redundant"],
                         "this run": round(float(ok.pct_redundant.min()), 1),
                         "tasks": f"{len(ok)} of {len(g)} (near-chance excluded)"})
    s = summary[(summary.delta_layer == delta[0]) & (summary.delta_neuron == delta[1])]
    for model, g in s.groupby("model"):
        ok = usable(g)
        n = f"{len(ok)} of {len(g)} (near-chance excluded)"
        if not len(ok):
            continue
        rows += [{"claim": label.format(delta=tuple(delta)), "model": model,
                  "paper": CLAIMS[claim],
                  "this run": round(float(getattr(ok[column], aggregate)()), decimals),
                  "tasks": n}
                 for claim, label, column, aggregate, decimals in TASK_RULES]
    return pd.DataFrame(rows).assign(source=SOURCE)
