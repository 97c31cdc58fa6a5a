"""What is being transferred: the transfer basin (Neyshabur, Sedghi & Zhang, NeurIPS 2020).

Fine-tuning from pretrained weights (P-T) versus training from random init (RI-T), in two arms:

* controlled — a small ResNet (``small_resnet``, batch norm) pretrained here on a source
  dataset with checkpoints saved along the way, then fine-tuned on targets;
* real — ``efficientnet_lite0`` with its ImageNet weights versus the same architecture at
  random init, fine-tuned at reduced resolution.

This module holds the data (:class:`ImageSet`, block shuffle, validation split) and the
experiment verbs (learning-rate selection on validation data, fine-tuning grids, block
shuffle, checkpoint sweep, the closing summary); the basin analyses are in
:mod:`diffred.studies.transfer.basin`, the pipelines a page calls in
:mod:`~diffred.studies.transfer.runs`, the paper's sourced claims and the verdict rules in
:mod:`~diffred.studies.transfer.paper`, and the charts and reader tables in
:mod:`~diffred.studies.transfer.report`.  Networks
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
from diffred.core.stats import t_interval
from diffred.core.training import RANDOM, Init, Run, TrainConfig, train
from diffred.studies.transfer.paper import OFFICIAL_LR


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


def common_rate(table: pd.DataFrame, target: str) -> float:
    """One rate for both inits on ``target`` (for the checks that compare P-T with RI-T at
    one rate): the rate of the grid with the highest mean validation accuracy over P-T and
    RI-T; ties go to the smaller rate.  Read off the same validation runs as
    :func:`choose_learning_rates`."""
    rows = table[table.dataset == target]
    if rows.empty:
        raise ValueError(f"no selection runs for target {target!r}; targets: "
                         f"{sorted(set(table.dataset))}")
    mean = rows.groupby("lr").val_accuracy.mean().reset_index()
    return float(mean.sort_values(["val_accuracy", "lr"], ascending=[False, True]).lr.iloc[0])


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
    acc = curve["accuracy"].to_numpy()
    return float(curve["epoch"].to_numpy()[np.argmax(acc >= share * acc[-1])])


def _scores(run: Run) -> dict:
    """A run's final test accuracy, accuracy after epoch 1 and epochs to 90% of final."""
    return {"accuracy": run.accuracy,
            "accuracy_epoch1": float(run.curve["accuracy"].iloc[0]),
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
                         "accuracy": c.accuracy})
    return pd.DataFrame(rows)


#: The block permutation of seed s is drawn with seed s + PERMUTATION_OFFSET: one permutation
#: per run seed, as the official code does, so that the seeds also resample the permutation.
PERMUTATION_OFFSET = 1234


def block_shuffle_sweep(arch: Arch, train_set: ImageSet, test_set: ImageSet, blocks,
                        pretrained: Init, lrs: dict, config: TrainConfig, seeds=(0,),
                        device=None) -> dict:
    """P-T and RI-T trained on block-shuffled copies of one target, per block size and seed,
    at the target's rates ``lrs``; seed s shuffles with its own permutation (seed s +
    :data:`PERMUTATION_OFFSET`), the same for its P-T and RI-T run and for train and test.
    Returns {(target, init, seed, block): Run}; block == resolution is the unshuffled image."""
    runs = {}
    for b in blocks:
        for seed in seeds:
            tr = train_set.shuffled(b, seed + PERMUTATION_OFFSET)
            te = test_set.shuffled(b, seed + PERMUTATION_OFFSET)
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
    src_curve = source_run.curve.set_index("epoch")["accuracy"]
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


def closing_summary(accuracy_tables) -> pd.DataFrame:
    """P-T and RI-T per arm, rate rule and target, over seeds.

    Parameters
    ----------
    accuracy_tables : list of DataFrame
        Accuracy tables of the arms (:attr:`diffred.studies.transfer.runs.Arm.acc`): columns
        arm, lr_rule, dataset, init, seed, lr, accuracy, epochs_to_90.

    Returns
    -------
    DataFrame
        One row per (arm, lr_rule, dataset, init): lr, accuracy (mean over seeds), ci95 (95%
        t half-width), epochs_to_90 (mean), seeds (count).
    """
    both = pd.concat(list(accuracy_tables), ignore_index=True)
    return (both.groupby(["arm", "lr_rule", "dataset", "init"])
            .agg(lr=("lr", "first"), accuracy=("accuracy", "mean"),
                 ci95=("accuracy", lambda a: t_interval(a)[1]),
                 epochs_to_90=("epochs_to_90", "mean"), seeds=("seed", "count"))
            .reset_index())
