"""Chapter 2's parameter rules (:data:`SCHEMA`): text encoders, the token and sentence tasks,
corpus sizes, clustering thresholds c and the (δ_L, δ_N) pairs of the neuron selection.
"""
from __future__ import annotations

from diffred.core.params import (
    DEVICE,
    FRACTION,
    POSITIVE,
    PRECISION,
    Bool,
    Choice,
    Float,
    Int,
    ListOf,
    Pair,
    Schema,
    dataset_names,
    model_names,
)


def _tasks():
    from diffred.studies.neurons.method import SENTENCE_TASKS, TOKEN_TASKS
    return list(TOKEN_TASKS) + list(SENTENCE_TASKS)


SCHEMA = Schema("02_transformer_redundancy", {
    "quick": Bool(), "models": ListOf(model_names("text")),
    "tasks": ListOf(Choice(choices=_tasks)), "mpnet_tasks": ListOf(Choice(choices=_tasks),
                                                                    min_len=0),
    "general_dataset": dataset_names("tokens"), "n_general": Int(3),
    "n_train_tokens": Int(2), "n_eval_tokens": Int(2), "n_cluster_tokens": Int(2),
    "n_train_sentences": Int(2), "n_eval_sentences": Int(2),
    "sentence_features": ListOf(Choice(choices=("finetuned", "cls", "mean"))),
    "n_finetune": Int(8), "tune_epochs": Int(1),
    "sweep_models": ListOf(model_names("text"), min_len=0),
    "thresholds": ListOf(Float(0, 1, open_low=True)), "threshold": Float(0, 1, open_low=True),
    "delta_pairs": ListOf(Pair(item=Float(0, 100))),
    "percentages": ListOf(FRACTION, optional=True), "C": POSITIVE, "max_iter": Int(1),
    "n_random_subsets": Int(1), "seed": Int(0), "device": DEVICE, "precision": PRECISION,
}, renamed={"random_seeds": "n_random_subsets"})
