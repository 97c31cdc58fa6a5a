"""Chapter 3's parameter rules (:data:`SCHEMA`): the episode pool, shots, ways and episode
counts, the mask grids; constraints tie the confounder cell to the models and datasets run and
the soft-mask shots to the augmented views available.
"""
from __future__ import annotations

from diffred.core.params import (
    DEVICE,
    FRACTION,
    PRECISION,
    THREADS,
    Bool,
    Choice,
    Float,
    Int,
    ListOf,
    Schema,
    dataset_names,
    model_names,
    subset,
)


def _mask_shots(p):
    """Soft-mask supports come from the view candidates of one half (selection or report)."""
    sel = int(round(p["selection_share"] * p["view_candidates_per_class"]))
    room = min(sel, p["view_candidates_per_class"] - sel)
    bad = [k for k in p["mask_shots"] if k > room]
    return (f"mask_shots {bad!r} exceed the {room} view candidates per class of the smaller "
            f"half (view_candidates_per_class = {p['view_candidates_per_class']}, "
            f"selection_share = {p['selection_share']}; soft-mask supports need augmented "
            f"views)" if bad else None)


SCHEMA = Schema("03_fewshot_soft_mask", {
    "quick": Bool(), "models": ListOf(model_names("vision")),
    "datasets": ListOf(dataset_names("image")), "split": Choice(choices=("train", "test")),
    "n_per_class": Int(2), "resolution": Int(32, optional=True), "views": Int(1),
    "view_candidates_per_class": Int(2), "n_way": Int(2), "shots": ListOf(Int(1)),
    "fractions": ListOf(FRACTION), "two_way_shots": ListOf(Int(1)),
    "mask_shots": ListOf(Int(1)), "selection_share": Float(0, 1, open_low=True,
                                                           open_high=True),
    "shrink_grid": ListOf(Float(0)), "topk_grid": ListOf(FRACTION), "n_query": Int(1),
    "n_episodes": Int(2), "n_episodes_high_shot": Int(2), "n_selection_episodes": Int(2),
    "pool_halves": Int(2), "pool_half_episodes": Int(2),
    "fdr": Float(0, 1, open_low=True, open_high=True), "simulation_shots": ListOf(Int(1)),
    "confounder_model": model_names("vision"),
    "confounder_dataset": dataset_names("image"), "seed": Int(0), "device": DEVICE,
    "precision": PRECISION, "threads": THREADS,
}, (subset("confounder_model", "models"), subset("confounder_dataset", "datasets"),
    _mask_shots), renamed={"backbones": "models", "confounder_backbone": "confounder_model"})
