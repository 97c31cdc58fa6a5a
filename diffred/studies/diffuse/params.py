"""Chapter 1's parameter rules (:data:`SCHEMA`, applied by :mod:`diffred.book.chapter` before
anything runs): backbones and datasets by registry name, subset fractions in (0, 1], the seeds
of the random subsets, probe settings; old names (``n_seeds``, ``train_per_class``) name the new.
"""
from __future__ import annotations

from diffred.core.params import (
    DEVICE,
    FRACTION,
    POSITIVE,
    PRECISION,
    Bool,
    Choice,
    Int,
    ListOf,
    Rule,
    Schema,
    dataset_names,
    model_names,
)

SCHEMA = Schema("01_diffuse_redundancy", {
    "quick": Bool(), "models": ListOf(model_names("vision")),
    "paper_models": Bool(), "datasets": ListOf(dataset_names("image")),
    "text_models": ListOf(model_names("text")),
    "text_datasets": ListOf(dataset_names("text", "text_pair")),
    "resolution": Int(32, optional=True), "n_per_class": Int(1),
    "full_train_datasets": ListOf(dataset_names("image"), min_len=0),
    "n_test_per_class": Int(1),
    "full_test_datasets": ListOf(dataset_names("image"), min_len=0),
    "text_train_n": Int(2), "text_test_n": Int(2),
    "curve_models": ListOf(model_names("vision"), min_len=0),
    "curve_n_per_class": ListOf(Int(1), min_len=0),
    "fractions": ListOf(FRACTION), "seeds": ListOf(Int(0)), "cka_sizes": ListOf(Int(1)),
    "baselines": ListOf(Choice(choices=("pca_top", "pca_bottom", "randproj_uniform",
                                        "randproj_gaussian")), min_len=0),
    "baseline_models": ListOf(model_names("vision"), min_len=0),
    "baseline_datasets": ListOf(dataset_names("image"), min_len=0),
    "layer_models": ListOf(model_names("vision"), min_len=0),
    "layer_datasets": ListOf(dataset_names("image"), min_len=0),
    "intermediate_layers": ListOf(Rule(), min_len=0),
    "dr_deltas": ListOf(FRACTION), "C": POSITIVE, "max_iter": Int(1), "device": DEVICE,
    "precision": PRECISION, "workers": Int(0),
}, renamed={"vision_models": "models", "vision_datasets": "datasets", "n_seeds": "seeds",
            "train_per_class": "n_per_class", "test_per_class": "n_test_per_class",
            "curve_train_per_class": "curve_n_per_class"})
