"""What is being transferred: the transfer basin (Neyshabur, Sedghi & Zhang, NeurIPS 2020).

Fine-tuning from pretrained weights (P-T) versus training from random init (RI-T), in two arms:

* controlled — a small ResNet (``small_resnet``, batch norm) pretrained here on a source
  dataset with checkpoints saved along the way, then fine-tuned on targets;
* real — ``efficientnet_lite0`` with its ImageNet weights versus the same architecture at
  random init, fine-tuned at reduced resolution.

This module holds the data (:class:`ImageSet`, block shuffle, validation split), the
experiment verbs (learning-rate selection on validation data, fine-tuning grids, block
shuffle, checkpoint sweep) and their charts; the basin analyses are in
:mod:`diffred.studies.transfer.basin`,
the verdicts in :mod:`diffred.studies.transfer.findings`.  Networks
come from the registry (:class:`diffred.core.models.Arch`), training from :mod:`diffred.core.training`
(every run cached, keyed by architecture, data fingerprints, hyper-parameters, seed, init
source, block shuffle and the training loop's code version).  Images travel as uint8
tensors (N, 3, R, R) and are
normalised per batch with the architecture's input config.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from diffred.core.cache import ArrayStore, hash_key
from diffred.core.datasets import load_dataset
from diffred.core.errors import check_choice
from diffred.core.models import Arch
from diffred.core.training import RANDOM, Init, Run, TrainConfig, train


# --------------------------------------------------------------------------- data
@dataclass
class ImageSet:
    """A labelled image set as tensors: x uint8 (N, 3, R, R), y int64 (N,)."""
    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list
    fingerprint: str
    block: int | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def resolution(self) -> int:
        return int(self.x.shape[-1])

    def shuffled(self, block: int, seed: int = 0) -> ImageSet:
        """The same images with one fixed permutation of ``block`` x ``block`` pixel blocks."""
        if block == self.resolution:
            return self
        return replace(self, x=block_shuffle(self.x, block, seed), block=block,
                       fingerprint=hash_key([self.fingerprint, "block", block, seed]))


def image_set(dataset: str, split: str, n_per_class: int, resolution: int, seed: int = 0
              ) -> ImageSet:
    """Load a seeded stratified subset as uint8 tensors (N, 3, R, R), resized once and cached."""
    data = load_dataset(dataset, split, n_per_class=n_per_class, seed=seed)
    arrays, _ = ArrayStore("images").get_or_compute(
        {"fingerprint": data.fingerprint, "resolution": resolution},
        lambda: ({"x": data.images(resolution)}, {"dataset": dataset, "split": split}))
    return ImageSet(dataset, torch.from_numpy(np.array(arrays["x"])),
                    torch.as_tensor(data.labels, dtype=torch.int64), list(data.classes),
                    hash_key([data.fingerprint, resolution]))


def target_sets(names, n_per_class: int, n_test_per_class: int, resolution: int, seed: int = 0
                ) -> dict[str, tuple[ImageSet, ImageSet]]:
    """{dataset: (train, test)} image sets at one resolution."""
    return {name: (image_set(name, "train", n_per_class, resolution, seed),
                   image_set(name, "test", n_test_per_class, resolution, seed)) for name in names}


# --------------------------------------------------------------------------- block shuffle
def valid_blocks(size: int) -> list[int]:
    """Block sizes that tile a ``size`` x ``size`` image."""
    return [b for b in range(1, size + 1) if size % b == 0]


def block_permutation(size: int, block: int, seed: int = 0) -> np.ndarray:
    """Pixel index map (size*size,): output pixel p takes input pixel ``perm[p]``.

    The (size/block)^2 blocks are permuted by one seeded permutation; pixels inside a block
    keep their relative position. ``block == size`` is the identity.
    """
    check_choice("block size", block, valid_blocks(size))
    nb = size // block
    order = np.random.default_rng(seed).permutation(nb * nb) if nb > 1 else np.zeros(1, int)
    rows, cols = np.divmod(np.arange(size * size), size)
    out_block = (rows // block) * nb + cols // block
    src_block = order[out_block]
    src_row = (src_block // nb) * block + rows % block
    src_col = (src_block % nb) * block + cols % block
    return src_row * size + src_col


def block_shuffle(x: torch.Tensor, block: int, seed: int = 0) -> torch.Tensor:
    """Apply the same fixed block permutation to every image of x (..., H, W), H == W."""
    size = x.shape[-1]
    if x.shape[-2] != size:
        raise ValueError(f"block shuffle needs square images, got {tuple(x.shape[-2:])}")
    perm = torch.from_numpy(block_permutation(size, block, seed))
    return x.flatten(-2)[..., perm].reshape(x.shape)


# --------------------------------------------------------------------------- validation split
def split_validation(data: ImageSet, fraction: float = 0.2, seed: int = 0
                     ) -> tuple[ImageSet, ImageSet]:
    """A seeded stratified split of a *training* set into (fit, validation) parts.

    Learning rates are chosen on the validation part (:func:`select_learning_rates`); the
    test set is never part of that choice."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    y = data.y.numpy()
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val[idx[:max(1, int(round(fraction * len(idx))))]] = True

    def part(mask, name):
        idx = torch.from_numpy(np.flatnonzero(mask))
        return replace(data, x=data.x[idx], y=data.y[idx],
                       fingerprint=hash_key([data.fingerprint, name, fraction, seed]))
    return part(~val, "fit"), part(val, "validation")


def subset(data: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """A seeded stratified subset of about ``n`` images (all of them when n ≥ len(data))."""
    if n >= len(data):
        return data
    return split_validation(data, n / len(data), seed)[1]


# --------------------------------------------------------------------------- experiment verbs
#: The official pair of rates: P-T ("finetune") 0.02, RI-T ("randinit") 0.1 — README
#: training jobs and ckpt_interpolation.py of google-research/understanding-transfer-learning
#: (nominal for batch 256).
OFFICIAL_LR = {"P-T": 0.02, "RI-T": 0.1}


def select_learning_rates(arch: Arch, train_sets: dict, pretrained: Init, grid,
                          config: TrainConfig, seed: int = 0, fraction: float = 0.2,
                          device=None) -> pd.DataFrame:
    """Validation accuracy of P-T and RI-T at every rate of ``grid``, on every target.

    ``train_sets`` = {target: training ImageSet} (test sets are not an argument: the choice
    cannot see them).  Each training set is split by :func:`split_validation`; a run trains
    on the fit part with ``config`` at each rate and is scored on the validation part.
    The column ``chosen`` marks the rule's choice (:func:`choose_learning_rates`).
    """
    rows = []
    for target, data in train_sets.items():
        fit, val = split_validation(data, fraction, seed)
        for init_name, init in (("P-T", pretrained), ("RI-T", RANDOM)):
            for lr in grid:
                run = train(arch, fit, val, replace(config, lr=float(lr)), init=init,
                            seed=seed, device=device)
                rows.append({"dataset": target, "init": init_name, "lr": float(lr),
                             "val_accuracy": run.accuracy, "n_fit": len(fit),
                             "n_val": len(val), "run": run.key})
    table = pd.DataFrame(rows)
    chosen = choose_learning_rates(table)
    return table.assign(chosen=[chosen[t, i] == lr for t, i, lr in
                                zip(table.dataset, table.init, table.lr)])


def choose_learning_rates(table: pd.DataFrame) -> dict:
    """The selection rule, fixed before looking: per (target, init) the rate with the highest
    validation accuracy; ties go to the smaller rate.  Returns {(target, init): lr}."""
    best = table.sort_values(["val_accuracy", "lr"], ascending=[False, True])
    return {(t, i): float(g.lr.iloc[0]) for (t, i), g in best.groupby(["dataset", "init"])}


def finetune_grid(arch: Arch, targets: dict, pretrained: Init, lrs: dict,
                  config: TrainConfig, seeds=(0, 1, 2), device=None) -> dict:
    """Fine-tune P-T (from ``pretrained``) and RI-T on every target and seed, each at its rate
    ``lrs[(target, init)]`` (e.g. from :func:`choose_learning_rates`, or
    :data:`OFFICIAL_LR` for every target).  Returns {(target, 'P-T'|'RI-T', seed): Run}."""
    runs = {}
    for target, (tr, te) in targets.items():
        for seed in seeds:
            for name, init in (("P-T", pretrained), ("RI-T", RANDOM)):
                runs[target, name, seed] = train(
                    arch, tr, te, replace(config, lr=lrs[target, name]), init=init, seed=seed,
                    device=device)
    return runs


def official_rates(targets) -> dict:
    """:data:`OFFICIAL_LR` for every target, in the form :func:`finetune_grid` takes."""
    return {(t, i): lr for t in targets for i, lr in OFFICIAL_LR.items()}


def epochs_to(curve: pd.DataFrame, share: float = 0.9) -> float:
    """First epoch whose test accuracy reaches ``share`` of the run's final accuracy."""
    acc = curve["test_accuracy"].to_numpy()
    return float(curve["epoch"].to_numpy()[np.argmax(acc >= share * acc[-1])])


def _scores(run: Run) -> dict:
    """A run's final test accuracy, accuracy after epoch 1 and epochs to 90% of final."""
    return {"accuracy": run.accuracy,
            "accuracy_epoch1": float(run.curve["test_accuracy"].iloc[0]),
            "epochs_to_90": epochs_to(run.curve)}


def accuracy_table(runs: dict, arm: str, model_id: str, lr_rule: str = "selected"
                   ) -> pd.DataFrame:
    """One row per run: target, init, seed, rate, final test accuracy, accuracy after epoch 1
    and epochs to reach 90% of the final accuracy (speed)."""
    return pd.DataFrame([{"arm": arm, "model": model_id, "lr_rule": lr_rule, "dataset": t,
                          "init": i, "seed": s, "lr": r.meta["spec"]["config"]["lr"],
                          **_scores(r), "n_train": r.meta.get("n_train"), "n_test": r.meta.get("n_test"),
                          "run": r.key}
                         for (t, i, s), r in runs.items()])


def curves_table(runs: dict, arm: str) -> pd.DataFrame:
    """Training curves: one row per (run, epoch)."""
    rows = []
    for key, r in runs.items():
        target, init, seed = key[:3]
        extra = {"block": key[3]} if len(key) > 3 else {}
        for _, c in r.curve.iterrows():
            rows.append({"arm": arm, "dataset": target, "init": init, "seed": seed, **extra,
                         "epoch": int(c.epoch), "train_loss": c.train_loss,
                         "test_accuracy": c.test_accuracy})
    return pd.DataFrame(rows)


def block_shuffle_sweep(arch: Arch, train_set: ImageSet, test_set: ImageSet, blocks,
                        pretrained: Init, lrs: dict, config: TrainConfig, seeds=(0,),
                        shuffle_seed: int = 0, device=None) -> dict:
    """P-T and RI-T trained on block-shuffled copies of one target, per block size and seed,
    at the target's rates ``lrs``.  Returns {(target, init, seed, block): Run}; block ==
    resolution is the unshuffled image."""
    runs = {}
    for b in blocks:
        tr, te = train_set.shuffled(b, shuffle_seed), test_set.shuffled(b, shuffle_seed)
        for seed in seeds:
            for name, init in (("P-T", pretrained), ("RI-T", RANDOM)):
                runs[train_set.name, name, seed, b] = train(
                    arch, tr, te, replace(config, lr=lrs[train_set.name, name]), init=init,
                    seed=seed, device=device)
    return runs


def block_table(runs: dict, arm: str) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "dataset": t, "init": i, "seed": s, "block": b,
                          **_scores(r)}
                         for (t, i, s, b), r in runs.items()])


def checkpoint_sweep(arch: Arch, source_run: Run, train_set: ImageSet, test_set: ImageSet,
                     config: TrainConfig, seeds=(0,), device=None) -> pd.DataFrame:
    """Fine-tune from every saved pretraining checkpoint; one row per (checkpoint, seed).

    Columns: checkpoint epoch, the source model's test accuracy and learning rate at that
    epoch (``lr_drop``: the rate dropped since the previous checkpoint), downstream final
    accuracy, accuracy after epoch 1 and epochs to 90% of final.  Epoch 0 is the random init.
    """
    rows = []
    src_curve = source_run.curve.set_index("epoch")["test_accuracy"]
    src_cfg = TrainConfig(**source_run.meta["spec"]["config"])
    previous_lr = src_cfg.lr
    for epoch in sorted(source_run.checkpoints):
        lr_here = src_cfg.lr_at(max(epoch - 1e-9, 0))
        for seed in seeds:
            run = train(arch, train_set, test_set, config,
                        init=source_run.checkpoint_init(epoch), seed=seed, device=device)
            rows.append({"checkpoint_epoch": epoch, "dataset": train_set.name, "seed": seed,
                         "source_accuracy": float(src_curve.get(epoch, np.nan)),
                         "source_lr": lr_here, "lr_drop": lr_here < previous_lr - 1e-12,
                         **_scores(run), "run": run.key})
        previous_lr = lr_here
    return pd.DataFrame(rows)


def lr_selection_table(selection: pd.DataFrame) -> pd.DataFrame:
    """Reader table: validation accuracy per rate (columns), per target and init; the chosen
    rate marked with '◀', and '◀ edge' where it is the grid's smallest or largest rate (a
    better one may lie outside the grid)."""
    low, high = selection.lr.min(), selection.lr.max()
    cell = selection.apply(lambda r: f"{r.val_accuracy:.3f}" + (
        (" ◀ edge" if r.lr in (low, high) else " ◀") if r.chosen else ""), axis=1)
    return (selection.assign(cell=cell)
            .pivot_table(index=["dataset", "init"], columns="lr", values="cell",
                         aggfunc="first", sort=False).rename(columns=lambda lr: f"lr {lr:g}")
            .reset_index().rename(columns={"dataset": "target"}))


# --------------------------------------------------------------------------- charts
def accuracy_chart(table: pd.DataFrame):
    """Bars: final accuracy per target, P-T vs RI-T (points = seeds); one row of panels per
    arm and learning-rate rule, so no bar averages runs of different arms or rates."""
    from diffred.core.plots import alt
    table = table.assign(setting=table["arm"] + ", " + table["lr_rule"] + " rates")
    base = alt.Chart(table).encode(x=alt.X("init:N", title=None), color="init:N")
    bars = base.mark_bar(opacity=0.7).encode(y=alt.Y("mean(accuracy):Q", title="test accuracy"))
    dots = base.mark_point(color="black").encode(y="accuracy:Q", tooltip=["seed", "accuracy"])
    return (bars + dots).properties(width=110, height=150).facet(
        row=alt.Row("setting:N", title=None), column=alt.Column("dataset:N", title=None)
    ).properties(title="Final accuracy")


def curves_chart(curves: pd.DataFrame, color: str = "init"):
    """Test accuracy per epoch (lines per seed), faceted by dataset."""
    from diffred.core.plots import alt
    return alt.Chart(curves).mark_line(point=True).encode(
        x="epoch:Q", y=alt.Y("test_accuracy:Q", title="test accuracy"),
        color=alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom")), detail="seed:N",
        strokeDash=alt.StrokeDash("init:N", legend=alt.Legend(
            orient="bottom", symbolType="stroke", symbolStrokeWidth=2, symbolSize=400)),
    ).properties(width=170, height=150).facet(column=alt.Column("dataset:N", title=None)
                                             ).properties(title="Training curves")


def block_chart(table: pd.DataFrame):
    """Accuracy (final and after 1 epoch) versus block size, P-T vs RI-T."""
    from diffred.core.plots import alt
    long = table.melt(id_vars=["init", "block"], value_vars=["accuracy", "accuracy_epoch1"],
                      var_name="when", value_name="acc")
    long["when"] = long["when"].map({"accuracy": "final", "accuracy_epoch1": "after epoch 1"})
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("block:Q", scale=alt.Scale(type="log", base=2), title="block size b (px)"),
        y=alt.Y("acc:Q", title="test accuracy"), color="init:N",
        strokeDash=alt.StrokeDash("when:N", title=None, legend=alt.Legend(
            symbolType="stroke", symbolStrokeWidth=2, symbolSize=400)),
    ).properties(width=260, height=180, title="Block shuffle: accuracy vs block size")


def checkpoint_chart(table: pd.DataFrame):
    """Downstream accuracy (mean over seeds) and epochs to 90% of final against the
    pretraining checkpoint; dashed: the source model's accuracy; rules: learning-rate drops."""
    from diffred.core.plots import alt
    x = alt.X("checkpoint_epoch:Q", title="pretraining checkpoint (epoch)")
    base = alt.Chart(table).encode(x=x)
    down = base.mark_line(point=True).encode(
        y=alt.Y("mean(accuracy):Q", title="accuracy (solid: downstream)"))
    src = base.mark_line(strokeDash=[4, 3], color="gray").encode(y="mean(source_accuracy):Q")
    drops = alt.Chart(table[table.lr_drop].drop_duplicates("checkpoint_epoch")).mark_rule(
        color="firebrick", strokeDash=[2, 2]).encode(x="checkpoint_epoch:Q")
    speed = base.mark_line(point=True, color="darkorange").encode(
        y=alt.Y("mean(epochs_to_90):Q", title="epochs to 90% of final"))
    return alt.hconcat((down + src + drops).properties(width=230, height=170),
                       (speed + drops).properties(width=170, height=170)).properties(
        title="Fine-tuning from each pretraining checkpoint (red: learning-rate drops)")
