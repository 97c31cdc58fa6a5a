"""What is being transferred: the transfer basin (Neyshabur, Sedghi & Zhang, NeurIPS 2020).

Fine-tuning from pretrained weights (P-T) versus training from random init (RI-T), in two arms:

* controlled — a small ResNet (``small_resnet``, batch norm) pretrained here on a source
  dataset with checkpoints saved along the way, then fine-tuned on targets;
* real — ``efficientnet_lite0`` with its ImageNet weights versus the same architecture at
  random init, fine-tuned at reduced resolution.

This module holds the data (:class:`ImageSet`, block shuffle), the experiment verbs, the
analyses (CKA, distances, interpolation, criticality), the charts and the verdicts.  Networks
come from the registry (:class:`diffred.models.Arch`), training from :mod:`diffred.training`
(every run cached, keyed by architecture, data fingerprints, hyper-parameters, seed, init
source, block shuffle and :data:`~diffred.training.CODE_VERSION`); analyses (interpolation,
criticality) are cached as small tables.  Images travel as uint8 tensors (N, 3, R, R) and are
normalised per batch with the architecture's input config.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .cache import ArrayStore, hash_key
from .datasets import load_dataset
from .device import default_device
from .errors import check_choice
from .models import Arch
from .similarity import linear_cka
from .training import (CODE_VERSION, Init, Run, TrainConfig, accuracy, predict,
                       recalibrate_bn, train)


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

    def shuffled(self, block: int, seed: int = 0) -> "ImageSet":
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


# --------------------------------------------------------------------------- experiment verbs
def _cached_frame(kind: str, spec, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """An analysis table from the result cache (:func:`diffred.cache.cached_tables`) under
    ``spec`` and the code version of this module and the training code."""
    import sys

    from . import training
    from .cache import cached_tables
    return cached_tables(kind, {"code": CODE_VERSION, **spec}, lambda: {"table": compute()},
                         code=(sys.modules[__name__], training))["table"]


def finetune_grid(arch: Arch, targets: dict, pretrained: Init, config_pt: TrainConfig,
                  config_ri: TrainConfig, seeds=(0, 1), device=None) -> dict:
    """Fine-tune P-T (from ``pretrained``) and RI-T on every target and seed.

    Returns {(target, 'P-T'|'RI-T', seed): Run}.
    """
    runs = {}
    for target, (tr, te) in targets.items():
        for seed in seeds:
            runs[target, "P-T", seed] = train(arch, tr, te, config_pt, init=pretrained,
                                              seed=seed, device=device)
            runs[target, "RI-T", seed] = train(arch, tr, te, config_ri, seed=seed, device=device)
    return runs


def accuracy_table(runs: dict, arm: str, model_id: str) -> pd.DataFrame:
    """One row per run: target, init, seed, final test accuracy, accuracy after epoch 1."""
    return pd.DataFrame([{"arm": arm, "model": model_id, "dataset": t, "init": i, "seed": s,
                          "accuracy": r.accuracy,
                          "accuracy_epoch1": float(r.curve["test_accuracy"].iloc[0]),
                          "n_train": r.meta.get("n_train"), "run": r.key}
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
                        pretrained: Init, config_pt: TrainConfig, config_ri: TrainConfig,
                        seed: int = 0, shuffle_seed: int = 0, device=None) -> dict:
    """P-T and RI-T trained on block-shuffled copies of one target, one block size each.

    Returns {(target, init, seed, block): Run}; block == resolution is the unshuffled image.
    """
    runs = {}
    for b in blocks:
        tr, te = train_set.shuffled(b, shuffle_seed), test_set.shuffled(b, shuffle_seed)
        runs[train_set.name, "P-T", seed, b] = train(arch, tr, te, config_pt, init=pretrained,
                                                     seed=seed, device=device)
        runs[train_set.name, "RI-T", seed, b] = train(arch, tr, te, config_ri, seed=seed,
                                                      device=device)
    return runs


def block_table(runs: dict, arm: str) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "dataset": t, "init": i, "seed": s, "block": b,
                          "accuracy": r.accuracy,
                          "accuracy_epoch1": float(r.curve["test_accuracy"].iloc[0])}
                         for (t, i, s, b), r in runs.items()])


def checkpoint_sweep(arch: Arch, source_run: Run, train_set: ImageSet, test_set: ImageSet,
                     config: TrainConfig, seed: int = 0, device=None) -> pd.DataFrame:
    """Fine-tune from every saved pretraining checkpoint; one row per checkpoint epoch.

    Columns: checkpoint epoch, source (pretraining) test accuracy at that epoch, source LR at
    that epoch, downstream accuracy.  Epoch 0 is the pretraining random init.
    """
    rows = []
    src_curve = source_run.curve.set_index("epoch")["test_accuracy"]
    src_cfg = TrainConfig(**source_run.meta["spec"]["config"])
    for epoch in sorted(source_run.checkpoints):
        run = train(arch, train_set, test_set, config, init=source_run.checkpoint_init(epoch),
                    seed=seed, device=device)
        rows.append({"checkpoint_epoch": epoch, "dataset": train_set.name, "seed": seed,
                     "source_accuracy": float(src_curve.get(epoch, np.nan)),
                     "source_lr": src_cfg.lr_at(max(epoch - 1e-9, 0)),
                     "accuracy": run.accuracy, "run": run.key})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- similarity
def stage_features(run: Run, x: torch.Tensor, device=None, batch_size: int = 256
                   ) -> dict[str, np.ndarray]:
    """Global-average-pooled output of every stage: {stage: (N, C_stage)}."""
    device = device or default_device()
    model = run.model().to(device)
    modules = dict(model.named_modules())
    outs: dict[str, list] = {s: [] for s in run.arch.stages}
    hooks = [modules[prefixes[-1]].register_forward_hook(
        lambda m, i, o, s=s: outs[s].append(o.float().mean((2, 3)).cpu()))
        for s, prefixes in run.arch.stages.items()]
    try:
        predict(model, x, run.arch.inputs, batch_size, device)
    finally:
        for h in hooks:
            h.remove()
    return {s: torch.cat(v).numpy() for s, v in outs.items()}


def pair_cka(pairs: dict, test_set: ImageSet, device=None) -> pd.DataFrame:
    """Linear CKA per stage for named run pairs {'P-T/P-T': (run_a, run_b), ...}."""
    rows, cache = [], {}
    for name, (a, b) in pairs.items():
        for run in (a, b):
            if run.key not in cache:
                cache[run.key] = stage_features(run, test_set.x, device)
        for stage in a.arch.stages:
            rows.append({"pair": name, "stage": stage, "dataset": test_set.name,
                         "cka": linear_cka(cache[a.key][stage], cache[b.key][stage])})
    return pd.DataFrame(rows)


def _body(state: dict, arch: Arch) -> dict:
    """Trainable-weight tensors outside the head (BN running statistics excluded)."""
    return {k: v for k, v in state.items() if not k.startswith(arch.head + ".")
            and "running_" not in k and "num_batches" not in k}


def l2_distance(state_a: dict, state_b: dict, arch: Arch) -> float:
    """||θ_a - θ_b||_2 over all body weights (head and BN statistics excluded)."""
    a, b = _body(state_a, arch), _body(state_b, arch)
    return float(torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a)))


def distance_table(pairs: dict, arch: Arch) -> pd.DataFrame:
    """ℓ2 distance for named state pairs {'P-T vs pretrained': (state_a, state_b), ...}."""
    return pd.DataFrame([{"pair": name, "l2_distance": l2_distance(a, b, arch)}
                         for name, (a, b) in pairs.items()])


# --------------------------------------------------------------------------- interpolation
def interpolate_states(state_a: dict, state_b: dict, lam: float) -> dict:
    """θ(λ) = (1-λ) θ_a + λ θ_b for floating tensors (exact at λ = 0, 1); integer buffers
    come from θ_a."""
    return {k: torch.lerp(a, state_b[k], lam) if a.is_floating_point() else a.clone()
            for k, a in state_a.items()}


def interpolation_curve(run_a: Run, run_b: Run, train_set: ImageSet, test_set: ImageSet,
                        points: int = 11, device=None) -> pd.DataFrame:
    """Test accuracy along the segment between two solutions, BN re-estimated at every λ.

    Returns rows (lambda, accuracy). At λ = 0 / 1 the weights are exactly the endpoints'
    and their recalibrated statistics are reproduced, so the endpoint accuracies match.
    """
    def compute():
        rows = []
        for lam in np.linspace(0, 1, points):
            model = run_a.model(interpolate_states(run_a.state, run_b.state, float(lam)))
            recalibrate_bn(model, train_set.x, run_a.arch.inputs, device=device)
            rows.append({"lambda": float(lam),
                         "accuracy": accuracy(model, test_set, run_a.arch.inputs, device)})
        return pd.DataFrame(rows)
    return _cached_frame("transfer-interpolation",
                         {"a": run_a.key, "b": run_b.key, "train": train_set.fingerprint,
                          "test": test_set.fingerprint, "points": points}, compute)


def barrier(curve: pd.DataFrame) -> float:
    """Largest drop of accuracy below the straight line joining the endpoints (≥ 0)."""
    lam, acc = curve["lambda"].to_numpy(), curve["accuracy"].to_numpy()
    line = (1 - lam) * acc[0] + lam * acc[-1]
    return float(max(0.0, np.max(line - acc)))


def interpolation_table(pairs: dict, train_set: ImageSet, test_set: ImageSet, points: int = 11,
                        device=None) -> pd.DataFrame:
    """Interpolation curves for named run pairs, with each pair's barrier in every row."""
    frames = []
    for name, (a, b) in pairs.items():
        curve = interpolation_curve(a, b, train_set, test_set, points, device)
        frames.append(curve.assign(pair=name, dataset=test_set.name, barrier=barrier(curve)))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- criticality
def _in_stage(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def rewound_state(final: dict, init: dict, prefixes, alpha: float) -> dict:
    """Move the weights of the modules under ``prefixes`` back towards their initial values.

    θ_i(α) = (1-α) θ_i^0 + α θ_i^F  (α = 1: final weights, α = 0: initial); all other
    modules keep θ^F.  BN running statistics are not moved (they are re-estimated afterwards).
    """
    return {k: torch.lerp(init[k], v, alpha)   # exact at α = 0 and α = 1
            if _in_stage(k, prefixes) and v.is_floating_point() and "running_" not in k
            else v.clone() for k, v in final.items()}


def perturb(state: dict, final: dict, init: dict, prefixes, sigma: float, seed: int = 0
            ) -> dict:
    """Add N(0, (sigma · rms(final_k - init_k))^2) noise to the stage's tensors in ``state``."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for k, v in state.items():
        if _in_stage(k, prefixes) and v.is_floating_point() and "running_" not in k:
            scale = (final[k] - init[k]).double().pow(2).mean().sqrt().float()
            out[k] = v + sigma * scale * torch.randn(v.shape, generator=gen)
    return out


def critical_alpha(rows: pd.DataFrame, accuracy: float, tolerance: float) -> float:
    """Smallest α reached walking from α = 1 down while accuracy stays ≥ accuracy - tolerance
    (1.0 when even α = 1 with noise fails)."""
    safe = 1.0
    for alpha, acc in rows.sort_values("alpha", ascending=False)[["alpha", "accuracy"]].values:
        if acc < accuracy - tolerance:
            break
        safe = float(alpha)
    return safe


def module_criticality(run: Run, train_set: ImageSet, test_set: ImageSet,
                       alphas=(1.0, 0.75, 0.5, 0.25, 0.0), sigma: float = 0.5,
                       tolerance: float = 0.05, device=None) -> pd.DataFrame:
    """Test accuracy when one stage is rewound to α along (θ^0 → θ^F) with noise ``sigma``.

    Noise std is ``sigma`` · rms(θ_i^F - θ_i^0) per tensor.  One row per (stage, α): accuracy,
    ``distance`` = ||θ_i(α) - θ^F|| of the noise-free point (0 at α = 1) and the stage's ``critical_alpha`` — the smallest α whose accuracy stays within
    ``tolerance`` of the unperturbed run (0: fully rewindable, non-critical; 1: critical).
    The init θ^0 is the pretrained point for P-T and the random init for RI-T.
    """
    def compute():
        rows = []
        for stage, prefixes in run.arch.stages.items():
            for alpha in alphas:
                center = rewound_state(run.state, run.init, prefixes, alpha)
                model = run.model(perturb(center, run.state, run.init, prefixes, sigma)
                                  if sigma else center)
                recalibrate_bn(model, train_set.x, run.arch.inputs, device=device)
                rows.append({"stage": stage, "alpha": alpha,
                             "distance": l2_distance(center, run.state, run.arch),
                             "accuracy": accuracy(model, test_set, run.arch.inputs, device)})
        df = pd.DataFrame(rows)
        return df.assign(critical_alpha=df.stage.map(
            {s: critical_alpha(g, run.accuracy, tolerance) for s, g in df.groupby("stage")}))
    return _cached_frame("transfer-criticality",
                         {"run": run.key, "train": train_set.fingerprint,
                          "test": test_set.fingerprint, "alphas": list(alphas), "sigma": sigma,
                          "tolerance": tolerance}, compute)


# --------------------------------------------------------------------------- charts
def _alt():
    import altair as alt
    try:
        import diffred.plots  # noqa: F401  (offline renderer, when present)
    except ImportError:
        pass
    return alt


def accuracy_chart(table: pd.DataFrame):
    """Bars: final accuracy per target, P-T vs RI-T (points = seeds)."""
    alt = _alt()
    base = alt.Chart(table).encode(x=alt.X("init:N", title=None), color="init:N")
    bars = base.mark_bar(opacity=0.7).encode(y=alt.Y("mean(accuracy):Q", title="test accuracy"))
    dots = base.mark_point(color="black").encode(y="accuracy:Q", tooltip=["seed", "accuracy"])
    return (bars + dots).properties(width=110, height=180).facet(
        column=alt.Column("dataset:N", title=None)).properties(title="Final accuracy")


def curves_chart(curves: pd.DataFrame, color: str = "init"):
    """Test accuracy per epoch (lines per seed), faceted by dataset."""
    alt = _alt()
    return alt.Chart(curves).mark_line(point=True).encode(
        x="epoch:Q", y=alt.Y("test_accuracy:Q", title="test accuracy"),
        color=alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom")), detail="seed:N",
        strokeDash=alt.StrokeDash("init:N", legend=alt.Legend(orient="bottom")),
    ).properties(width=170, height=150).facet(column=alt.Column("dataset:N", title=None)
                                             ).properties(title="Training curves")


def block_chart(table: pd.DataFrame):
    """Accuracy (final and after 1 epoch) versus block size, P-T vs RI-T."""
    alt = _alt()
    long = table.melt(id_vars=["init", "block"], value_vars=["accuracy", "accuracy_epoch1"],
                      var_name="when", value_name="acc")
    long["when"] = long["when"].map({"accuracy": "final", "accuracy_epoch1": "after epoch 1"})
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("block:Q", scale=alt.Scale(type="log", base=2), title="block size b (px)"),
        y=alt.Y("acc:Q", title="test accuracy"), color="init:N", strokeDash="when:N",
    ).properties(width=260, height=180, title="Block shuffle: accuracy vs block size")


def cka_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("stage:N", sort=None), y=alt.Y("cka:Q", scale=alt.Scale(domain=[0, 1]),
                                              title="linear CKA"),
        color=alt.Color("pair:N", legend=alt.Legend(orient="bottom", columns=1)),
    ).properties(width=240, height=170, title="Feature similarity per stage")


def interpolation_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("lambda:Q", title="λ"), y=alt.Y("accuracy:Q", title="test accuracy"),
        color=alt.Color("pair:N", legend=alt.Legend(orient="bottom", columns=1)),
        tooltip=["pair", "lambda", "accuracy", "barrier"],
    ).properties(width=240, height=170, title="Linear interpolation θ(λ), BN re-estimated")


def criticality_chart(table: pd.DataFrame):
    alt = _alt()
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="α (1 = final weights, 0 = initial)", scale=alt.Scale(reverse=True)),
        y=alt.Y("accuracy:Q", title="test accuracy"), color=alt.Color("stage:N", sort=None),
    ).properties(width=180, height=160).facet(column=alt.Column("init:N", title=None)
                                             ).properties(title="Module criticality: rewind one stage")


def checkpoint_chart(table: pd.DataFrame):
    alt = _alt()
    base = alt.Chart(table).encode(x=alt.X("checkpoint_epoch:Q", title="pretraining checkpoint (epoch)"))
    down = base.mark_line(point=True).encode(y=alt.Y("accuracy:Q", title="downstream accuracy"))
    src = base.mark_line(strokeDash=[4, 3], color="gray").encode(y="source_accuracy:Q")
    return (down + src).properties(width=260, height=180, title=(
        "Downstream accuracy vs pretraining checkpoint (dashed: source accuracy)"))


# --------------------------------------------------------------------------- one arm, all analyses
def basin_analysis(runs: dict, target: str, train_set: ImageSet, test_set: ImageSet,
                   pretrained: Init, points: int = 11, alphas=(1.0, 0.75, 0.5, 0.25, 0.0),
                   sigma: float = 0.5, device=None) -> dict[str, pd.DataFrame]:
    """CKA per stage, ℓ2 distances, interpolation and criticality for one target.

    Uses runs[(target, 'P-T'|'RI-T', seed)] for the first two seeds.  Returns tables
    'cka', 'distances', 'interpolation', 'criticality'.
    """
    seeds = sorted({s for (t, _, s) in runs if t == target})[:2]
    if len(seeds) < 2:
        raise ValueError(f"basin analysis needs 2 seeds per init, got seeds {seeds}")
    pt1, pt2 = runs[target, "P-T", seeds[0]], runs[target, "P-T", seeds[1]]
    ri1, ri2 = runs[target, "RI-T", seeds[0]], runs[target, "RI-T", seeds[1]]
    pairs = {"P-T/P-T": (pt1, pt2), "RI-T/RI-T": (ri1, ri2), "P-T/RI-T": (pt1, ri1)}
    arch = pt1.arch
    distances = distance_table({
        "P-T/P-T": (pt1.state, pt2.state), "RI-T/RI-T": (ri1.state, ri2.state),
        "P-T/RI-T": (pt1.state, ri1.state), "P-T/pretrained": (pt1.state, pt1.init),
        "RI-T/its init": (ri1.state, ri1.init)}, arch)
    crit = pd.concat([module_criticality(r, train_set, test_set, alphas, sigma, device=device
                                         ).assign(init=name)
                      for name, r in (("P-T", pt1), ("RI-T", ri1))], ignore_index=True)
    return {"cka": pair_cka(pairs, test_set, device),
            "distances": distances.assign(dataset=target),
            "interpolation": interpolation_table(pairs, train_set, test_set, points, device),
            "criticality": crit.assign(dataset=target)}


PAPER_FINDINGS = {
    "P-T beats RI-T": "P-T ≥ RI-T accuracy on every target, even far ones (CheXpert, quickdraw)",
    "P-T trains faster": "P-T reaches high accuracy in far fewer steps",
    "block shuffle": "shrinking b hurts P-T more than RI-T; the gap narrows but P-T still "
                     "trains faster (low-level statistics are transferred, not only features)",
    "CKA": "P-T/P-T features are more similar than RI-T/RI-T, at every layer",
    "l2 distance": "P-T solutions are close to each other and to the pretrained weights; "
                   "RI-T solutions are far apart",
    "interpolation": "no barrier between two P-T solutions (same basin); "
                     "a barrier between two RI-T solutions",
    "criticality": "lower layers are less critical than higher ones; "
                   "P-T modules are less critical than RI-T modules",
    "checkpoint": "early pretraining checkpoints already give most of the benefit; "
                  "the benefit jumps around learning-rate drops",
}


def _mean(df, **where) -> float:
    for k, v in where.items():
        df = df[df[k] == v]
    return float(df.iloc[:, -1].mean()) if len(df) else float("nan")


def arm_findings(acc: pd.DataFrame, blocks: pd.DataFrame, basin: dict,
                 checkpoints: pd.DataFrame | None = None, barrier_tol: float = 0.02) -> dict:
    """{finding: (what this run measured, reproduced?)} for one arm, from its result tables."""
    out = {}
    by = acc.groupby(["dataset", "init"]).accuracy.mean().unstack()
    gap = by["P-T"] - by["RI-T"]
    out["P-T beats RI-T"] = ("; ".join(f"{t}: {by.loc[t, 'P-T']:.3f} vs {by.loc[t, 'RI-T']:.3f}"
                                       for t in by.index), bool((gap > 0).all()))
    e1 = acc.groupby("init").accuracy_epoch1.mean()
    out["P-T trains faster"] = (f"after epoch 1: P-T {e1['P-T']:.3f}, RI-T {e1['RI-T']:.3f}",
                                bool(e1["P-T"] > e1["RI-T"]))
    b = blocks.groupby(["block", "init"])[["accuracy", "accuracy_epoch1"]].mean().unstack()
    full, small = b.index.max(), b.index.min()
    g_full = b.loc[full, ("accuracy", "P-T")] - b.loc[full, ("accuracy", "RI-T")]
    g_small = b.loc[small, ("accuracy", "P-T")] - b.loc[small, ("accuracy", "RI-T")]
    drop_pt = b.loc[full, ("accuracy", "P-T")] - b.loc[small, ("accuracy", "P-T")]
    drop_ri = b.loc[full, ("accuracy", "RI-T")] - b.loc[small, ("accuracy", "RI-T")]
    out["block shuffle"] = (f"P-T-RI-T gap {g_full:+.3f} at b={full}, {g_small:+.3f} at b={small}; "
                            f"drop P-T {drop_pt:.3f}, RI-T {drop_ri:.3f}",
                            bool(g_small < g_full and drop_pt > drop_ri))
    cka = basin["cka"].groupby("pair").cka.mean()
    out["CKA"] = (f"mean CKA P-T/P-T {cka['P-T/P-T']:.3f}, RI-T/RI-T {cka['RI-T/RI-T']:.3f}, "
                  f"P-T/RI-T {cka['P-T/RI-T']:.3f}",
                  bool(cka["P-T/P-T"] > cka["RI-T/RI-T"]))
    d = basin["distances"].set_index("pair").l2_distance
    out["l2 distance"] = (f"P-T/P-T {d['P-T/P-T']:.3g}, RI-T/RI-T {d['RI-T/RI-T']:.3g}, "
                          f"P-T/pretrained {d['P-T/pretrained']:.3g}, "
                          f"RI-T/its init {d['RI-T/its init']:.3g}",
                          bool(d["P-T/P-T"] < d["RI-T/RI-T"]
                               and d["P-T/pretrained"] < d["RI-T/its init"]))
    bar = basin["interpolation"].groupby("pair").barrier.first()
    out["interpolation"] = (f"barrier P-T/P-T {bar['P-T/P-T']:.3f}, RI-T/RI-T "
                            f"{bar['RI-T/RI-T']:.3f}, P-T/RI-T {bar['P-T/RI-T']:.3f}",
                            bool(bar["P-T/P-T"] <= barrier_tol
                                 and bar["RI-T/RI-T"] > bar["P-T/P-T"]))
    crit = basin["criticality"].groupby(["init", "stage"], sort=False).critical_alpha.first()
    pt, ri = crit["P-T"], crit["RI-T"]
    half = len(pt) // 2
    out["criticality"] = (
        f"critical α (0 = rewindable) P-T {', '.join(f'{v:.2f}' for v in pt)}; "
        f"RI-T {', '.join(f'{v:.2f}' for v in ri)}",
        bool(pt.iloc[:half].mean() <= pt.iloc[half:].mean() and pt.mean() <= ri.mean()))
    if checkpoints is not None and len(checkpoints) > 2:
        c = checkpoints.sort_values("checkpoint_epoch")
        a0, af = c.accuracy.iloc[0], c.accuracy.iloc[-1]
        mid = c.iloc[len(c) // 2]
        share = (mid.accuracy - a0) / (af - a0) if af > a0 else float("nan")
        share_text = f"{share:.0%} of the final benefit" if af > a0 else "no benefit to share"
        out["checkpoint"] = (f"epoch 0: {a0:.3f}, epoch {int(mid.checkpoint_epoch)}: "
                             f"{mid.accuracy:.3f} ({share_text}), final: {af:.3f}",
                             bool(share >= 0.8))
    return out


def paper_vs_run(findings: dict[str, dict]) -> pd.DataFrame:
    """Rows per paper finding: the paper's claim and, for every arm, measured value and verdict."""
    rows = []
    for finding, claim in PAPER_FINDINGS.items():
        row = {"finding": finding, "paper (Neyshabur et al. 2020)": claim}
        for arm, f in findings.items():
            measured, ok = f.get(finding, ("not measured in this arm", None))
            row[f"{arm}: measured"] = measured
            row[f"{arm}: reproduced"] = {True: "yes", False: "no", None: "—"}[ok]
        rows.append(row)
    return pd.DataFrame(rows)
