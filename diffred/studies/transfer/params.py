"""Chapter 4's parameter rules (:data:`SCHEMA`): both arms' data sizes, training schedules,
learning-rate grids and analyses; constraints check that block sizes divide the resolution,
that the pretraining checkpoints include the last epoch and that checkpoint seeds are run seeds.
"""
from __future__ import annotations

from diffred.core.params import (
    DEVICE,
    POSITIVE,
    PRECISION,
    THREADS,
    Bool,
    Choice,
    Float,
    Int,
    ListOf,
    Schema,
    dataset_names,
    subset,
)


def _divides(blocks: str, size: str):
    def check(p):
        bad = [b for b in p[blocks] if p[size] % b]
        return (f"{blocks} {bad!r} must divide {size} = {p[size]} (valid: "
                f"{[b for b in range(1, p[size] + 1) if p[size] % b == 0]})" if bad else None)
    return check


def _among(items: str, pool: str):
    def check(p):
        bad = [s for s in p[items] if s not in p[pool]]
        return f"{items} {bad!r} must be among {pool} {p[pool]!r}" if bad else None
    return check


def _saved_final(p):
    bad = [e for e in p["save_epochs"] if e > p["pretrain_epochs"]]
    if bad:
        return f"save_epochs {bad!r} exceed pretrain_epochs = {p['pretrain_epochs']}"
    if p["pretrain_epochs"] not in p["save_epochs"]:
        return (f"save_epochs {p['save_epochs']!r} must include pretrain_epochs = "
                f"{p['pretrain_epochs']} (the fine-tuning start point)")
    return None


SCHEMA = Schema("04_transfer_basin", {
    "quick": Bool(), "device": DEVICE, "precision": PRECISION, "seeds": ListOf(Int(0), min_len=2),
    "threads": THREADS, "validation_fraction": Float(0, 1, open_low=True, open_high=True),
    "selection_seed": Int(0), "official_lr_arms": ListOf(Choice(["real", "controlled"])),
    "common_rate_arms": ListOf(Choice(["real", "controlled"])),
    "real_targets": ListOf(dataset_names("image")), "real_resolution": Int(32),
    "real_n_per_class": Int(2), "real_n_test_per_class": Int(1), "real_epochs": Int(1),
    "real_lr_grid": ListOf(POSITIVE), "real_analysis_target": dataset_names("image"),
    "real_blocks": ListOf(Int(1)), "real_interpolation_pairs": Int(1),
    "real_interpolation_types": ListOf(Choice(["P-T/P-T", "RI-T/RI-T", "P-T/RI-T"]),
                                       min_len=1),
    "real_analysis_images": Int(2), "real_criticality_alphas": ListOf(Float(0, 1)),
    "real_criticality_sigmas": ListOf(Float(0, 1, open_low=True)),
    "source": dataset_names("image"), "source_seed": Int(0),
    "source_n_per_class": Int(1), "source_n_test_per_class": Int(1), "resnet_width": Int(1),
    "resnet_resolution": Int(4), "pretrain_epochs": Int(1), "pretrain_lr": POSITIVE,
    "save_epochs": ListOf(Int(0)), "targets": ListOf(dataset_names("image")),
    "target_n_per_class": Int(2), "target_n_test_per_class": Int(1), "finetune_epochs": Int(1),
    "lr_grid": ListOf(POSITIVE), "analysis_target": dataset_names("image"),
    "analysis_images": Int(2), "checkpoint_seeds": ListOf(Int(0)),
    "blocks": ListOf(Int(1)), "interpolation_points": Int(2),
    "criticality_alphas": ListOf(Float(0, 1)),
    "criticality_sigmas": ListOf(Float(0, 1, open_low=True)),
    "criticality_epsilon": Float(0, 1),
}, (subset("analysis_target", "targets"), subset("real_analysis_target", "real_targets"),
    _divides("blocks", "resnet_resolution"), _divides("real_blocks", "real_resolution"),
    _saved_final, _among("checkpoint_seeds", "seeds")),
    renamed={f"{arm}_{split}per_class": f"{arm}_n_{split}per_class"
             for arm in ("real", "source", "target") for split in ("", "test_")})
