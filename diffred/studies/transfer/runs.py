"""Chapter 4's pipeline as verbs: the controlled arm's source pretraining, and one arm.

Both arms of the chapter run the same steps, :func:`run_arm`: learning rates chosen on
validation data, P-T and RI-T fine-tuned per seed at those rates (and at the official pair
where asked), the block shuffle on one target, and the basin analyses of that target (CKA,
ℓ2 distances, interpolation, criticality).  What differs between the arms (network,
pretrained point, data sizes, seeds of the block shuffle, interpolated pairs, criticality
grid) is a parameter.  :func:`pretrain_source` trains the controlled arm's source model.

These verbs only call the experiment verbs of :mod:`diffred.studies.transfer.method` and
:mod:`diffred.studies.transfer.basin`, in the order the page used to; no cache key depends
on this module.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from diffred.core.models import Arch
from diffred.core.training import Init, Run, TrainConfig, train
from diffred.studies.transfer.basin import (
    PAIR_TYPES,
    basin_analysis,
    criticality_table,
    distance_table,
)
from diffred.studies.transfer.method import (
    ImageSet,
    accuracy_table,
    block_shuffle_sweep,
    block_table,
    choose_learning_rates,
    common_rate,
    curves_table,
    finetune_grid,
    image_set,
    official_rates,
    select_learning_rates,
    subset,
    target_sets,
)


@dataclass
class Source:
    """The controlled arm's source model, pretrained here.

    Attributes
    ----------
    model_id : str
        ``"small_resnet-w<width>@<dataset>"``, the ``model`` of the arm's accuracy table.
    arch : Arch
        The small ResNet.
    train, test : ImageSet
        The source's training and test images.
    run : Run
        The pretraining run (its saved checkpoints are :attr:`Run.checkpoints`).
    pretrained : Init
        The final checkpoint, the P-T starting point.
    """
    model_id: str
    arch: Arch
    train: ImageSet
    test: ImageSet
    run: Run
    pretrained: Init


def pretrain_source(dataset: str, per_class: int, test_per_class: int, width: int,
                    resolution: int, epochs: int, lr: float, save_epochs, seed: int,
                    device=None) -> Source:
    """Pretrain the small ResNet on ``dataset`` with a step learning-rate schedule.

    Parameters
    ----------
    dataset : str
        Source dataset (short name).
    per_class, test_per_class : int
        Training and test images per class (seeded stratified subsets, seed 0).
    width, resolution : int
        The ResNet's width and input resolution (px).
    epochs : int
        Pretraining epochs; the final checkpoint is :attr:`Source.pretrained`.
    lr : float
        Initial rate of the step schedule (x0.1 at 50% and 75% of training), batch 128,
        random flips.
    save_epochs : list of int
        Epochs whose weights are kept (0: the random init).
    seed : int
        Seed of the pretraining run.
    device : str, optional
        Where to train (None: CUDA when available, else CPU).

    Returns
    -------
    Source
    """
    train_set = image_set(dataset, "train", per_class, resolution)
    test_set = image_set(dataset, "test", test_per_class, resolution)
    arch = Arch("small_resnet", width=width, resolution=resolution)
    run = train(arch, train_set, test_set, seed=seed, save_epochs=save_epochs, device=device,
                config=TrainConfig(epochs=epochs, lr=lr, schedule="step", flip=True,
                                   batch_size=128))
    return Source(f"small_resnet-w{width}@{dataset}", arch, train_set, test_set, run,
                  run.checkpoint_init(epochs))


@dataclass
class Arm:
    """What one arm of the chapter measured (:func:`run_arm`).

    Attributes
    ----------
    name : str
        ``"real"`` or ``"controlled"``.
    data : dict
        {target: (train ImageSet, test ImageSet)}.
    selection : DataFrame
        :func:`~diffred.studies.transfer.method.select_learning_rates`: one row per target,
        init and rate; columns dataset, init, lr, val_accuracy, n_fit, n_val, run, chosen.
    lrs : dict
        The chosen rates {(target, init): lr}.
    runs : dict
        The fine-tuning runs at the chosen rates {(target, init, seed): Run}.
    acc : DataFrame
        :func:`~diffred.studies.transfer.method.accuracy_table` of the runs (``lr_rule``
        "selected"), followed by those at the official pair (``lr_rule`` "official") where
        run; one row per run: arm, model, lr_rule, dataset, init, seed, lr, accuracy,
        accuracy_epoch1, epochs_to_90, n_train, n_test, run (and any extra columns).
    curves : DataFrame
        :func:`~diffred.studies.transfer.method.curves_table` of the selected-rate runs.
    block_runs : dict
        {(target, init, seed, block): Run} of the block shuffle.
    block_acc : DataFrame
        :func:`~diffred.studies.transfer.method.block_table` of those runs.
    criticality_images : ImageSet
        The training images on which criticality was measured.
    basin : dict
        :func:`~diffred.studies.transfer.basin.basin_analysis`: tables 'cka', 'distances',
        'interpolation', 'criticality'.
    common : dict or None
        The analysis target's runs at one rate for both inits
        (:func:`~diffred.studies.transfer.method.common_rate`): 'lr', 'runs', 'distances',
        'criticality'; None where not run (``common=False``).
    """
    name: str
    data: dict
    selection: pd.DataFrame
    lrs: dict
    runs: dict
    acc: pd.DataFrame
    curves: pd.DataFrame
    block_runs: dict
    block_acc: pd.DataFrame
    criticality_images: ImageSet
    basin: dict
    common: dict | None

    @property
    def selected(self) -> pd.DataFrame:
        """The rows of :attr:`acc` at the selected rates."""
        return self.acc[self.acc.lr_rule == "selected"]


def run_arm(arm: str, arch: Arch, pretrained: Init, model_id: str, targets, per_class: int,
            test_per_class: int, resolution: int, config: TrainConfig, lr_grid, *, seeds,
            selection_seed: int, validation_fraction: float, official: bool,
            analysis_target: str, blocks, block_seeds, analysis_images: int,
            interpolation_points: int, interpolation_pairs: int | None = None,
            interpolation_types=PAIR_TYPES, criticality_alphas, criticality_sigmas,
            criticality_epsilon: float, common: bool = True,
            extra_columns: dict | None = None,
            save: Callable[[pd.DataFrame, str], object] | None = None, device=None) -> Arm:
    """One arm of chapter 4: rates on validation, P-T and RI-T per seed, block shuffle, basin.

    In order: the targets' image sets; validation accuracy of P-T (from ``pretrained``) and
    RI-T at every rate of ``lr_grid`` and the rule's choice; every target and seed fine-tuned
    at the chosen rates (and at the official pair when ``official``); the block shuffle of
    ``analysis_target``; its basin analyses; and the analysis target's runs at one common rate
    for both inits with their ℓ2 distances and criticality (rates chosen per init differ, and
    both grow with the rate).  Result tables are handed to ``save`` (e.g. the chapter's
    ``ch.save``) as soon as they exist, named ``lr_selection_<arm>``, ``accuracy_<arm>``,
    ``curves_<arm>``, ``block_shuffle_<arm>``, ``cka_<arm>``, ``distances_<arm>``,
    ``interpolation_<arm>``, ``criticality_<arm>``, ``distances_common_<arm>``,
    ``criticality_common_<arm>``.

    Parameters
    ----------
    arm : str
        The arm's name (``"real"``, ``"controlled"``), the ``arm`` column of its tables.
    arch : Arch
        The trained architecture.
    pretrained : Init
        The P-T starting point.
    model_id : str
        The ``model`` column of the accuracy table.
    targets : list of str
        Target datasets.
    per_class, test_per_class : int
        Training and test images per class of every target.
    resolution : int
        Image resolution (px).
    config : TrainConfig
        Fine-tuning configuration; the rate is set per run.
    lr_grid : list of float
        Rates searched on validation data.
    seeds : list of int
        Fine-tuning seeds.
    selection_seed : int
        Seed of the validation split, of the selection runs and of the criticality subset.
    validation_fraction : float
        Share of each training set held out to choose the rates.
    official : bool
        Also fine-tune at the official pair (rows with ``lr_rule`` "official").
    analysis_target : str
        Target of the block shuffle and the basin analyses.
    blocks : list of int
        Block sizes of the shuffle.
    block_seeds : list of int
        Seeds of the block-shuffle runs.
    analysis_images : int
        Training images (seeded stratified subset) on which criticality is measured.
    interpolation_points : int
        Points λ along each interpolation path.
    interpolation_pairs : int, optional
        At most this many pairs of each type interpolated (None: every pair).
    interpolation_types : tuple of str
        Pair types interpolated.
    criticality_alphas, criticality_sigmas : list of float
        The criticality grid.
    criticality_epsilon : float
        Criticality's error margin over the trained network's own train error.
    common : bool
        Also train the analysis target at one common rate for both inits and measure its ℓ2
        distances and criticality (the rate check of those findings).
    extra_columns : dict, optional
        {column: value} added to every row of the accuracy table (e.g. the pretraining run).
    save : callable, optional
        ``save(table, name)`` for every result table.
    device : str, optional
        Where to train (None: CUDA when available, else CPU).

    Returns
    -------
    Arm
    """
    def keep(table: pd.DataFrame, name: str) -> None:
        if save is not None:
            save(table, f"{name}_{arm}")

    data = target_sets(targets, per_class, test_per_class, resolution)
    selection = select_learning_rates(
        arch, {t: tr for t, (tr, _) in data.items()}, pretrained, lr_grid, config,
        seed=selection_seed, fraction=validation_fraction, device=device)
    keep(selection, "lr_selection")
    lrs = choose_learning_rates(selection)
    runs = finetune_grid(arch, data, pretrained, lrs, config, seeds, device)
    acc = accuracy_table(runs, arm, model_id)
    if official:
        at_official = finetune_grid(arch, data, pretrained, official_rates(targets), config,
                                    seeds, device)
        acc = pd.concat([acc, accuracy_table(at_official, arm, model_id, "official")],
                        ignore_index=True)
    for column, value in (extra_columns or {}).items():
        acc[column] = value
    keep(acc, "accuracy")
    curves = curves_table(runs, arm)
    keep(curves, "curves")
    tr, te = data[analysis_target]
    block_runs = block_shuffle_sweep(arch, tr, te, blocks, pretrained, lrs, config,
                                     seeds=block_seeds, device=device)
    block_acc = block_table(block_runs, arm)
    keep(block_acc, "block_shuffle")
    crit_images = subset(tr, analysis_images, selection_seed)
    grid = dict(alphas=criticality_alphas, sigmas=criticality_sigmas,
                epsilon=criticality_epsilon)
    basin = basin_analysis(
        runs, analysis_target, tr, te, interpolation_points,
        interpolation_pairs=interpolation_pairs, interpolation_types=interpolation_types,
        criticality=grid, criticality_images=crit_images, device=device)
    for name, table in basin.items():
        keep(table, name)
    at_common = None
    if common:
        lr = common_rate(selection, analysis_target)
        runs_at = finetune_grid(arch, {analysis_target: (tr, te)}, pretrained,
                                {(analysis_target, i): lr for i in ("P-T", "RI-T")}, config,
                                seeds, device)
        at_common = {"lr": lr, "runs": runs_at,
                     "distances": distance_table(runs_at, analysis_target).assign(lr=lr),
                     "criticality": criticality_table(runs_at, analysis_target, crit_images,
                                                      device=device, **grid).assign(lr=lr)}
        keep(at_common["distances"], "distances_common")
        keep(at_common["criticality"], "criticality_common")
    return Arm(arm, data, selection, lrs, runs, acc, curves, block_runs, block_acc, crit_images,
               basin, at_common)
