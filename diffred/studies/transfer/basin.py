"""The transfer basin: how close, how similar and how connected fine-tuned solutions are.

Analyses of trained :class:`~diffred.core.training.Run` objects (Neyshabur, Sedghi & Zhang,
NeurIPS 2020, Section 3 onwards):

* :func:`pair_cka` — linear CKA of every stage's pooled output between two runs;
* :func:`l2_distance` — ℓ2 distance of the weights outside the head;
* :func:`interpolation_curve` / :func:`barrier` — accuracy along θ(λ) = (1-λ) θ_a + λ θ_b,
  BN statistics re-estimated at every λ, or interpolated with the weights (:data:`BN_MODES`);
* :func:`module_criticality` — Chatterji, Neyshabur & Sedghi (ICLR 2020): for module i,
  μ_i = min over (α, σ) ∈ [0, 1]² of α² ‖θ_i^F − θ_i^0‖² / σ² subject to the train 0-1 error
  of the network with θ_i = (1-α) θ_i^0 + α θ_i^F + u, u ~ N(0, σ² I), staying ≤ ε
  (:func:`criticality_search` is that grid search, on any error function);
* :func:`basin_analysis` — all of them over every seed pair (criticality: every run) of one
  target, and :func:`pair_summary`, the mean per pair type with its 95% interval from
  resampling seeds (:func:`~diffred.core.stats.seed_pair_bootstrap`).

Their charts and the reader's cut of :func:`pair_summary` are in
:mod:`diffred.studies.transfer.report`.

Each analysis over real runs is cached as a small table (:func:`diffred.core.cache.cached_tables`),
keyed by the runs' cache keys and the data fingerprints.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from diffred.core.device import default_device
from diffred.core.errors import check_choice
from diffred.core.models import Arch
from diffred.core.similarity import linear_cka
from diffred.core.stats import seed_pair_bootstrap
from diffred.core.training import Run, accuracy, predict, recalibrate_bn

PAIR_TYPES = ("P-T/P-T", "RI-T/RI-T", "P-T/RI-T")


def _cached_frame(kind: str, spec, compute: Callable[[], pd.DataFrame], code) -> pd.DataFrame:
    """An analysis table from the result cache under ``spec`` and the source of ``code`` (the
    functions that compute it, beside :mod:`diffred.core.training`'s forward pass and BN
    recalibration, which every analysis uses)."""
    from diffred.core.cache import cached_tables
    return cached_tables(kind, spec, lambda: {"table": compute()},
                         code=(*code, predict, recalibrate_bn))["table"]


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
        predict(model, x, run.arch.inputs, batch_size, device, fused=False)
    finally:
        for h in hooks:
            h.remove()
    return {s: torch.cat(v).numpy() for s, v in outs.items()}


def pair_cka(pairs: dict, test_set, device=None) -> pd.DataFrame:
    """Linear CKA per stage for named run pairs {name: (run_a, run_b)}; each run's stage
    features are computed once however many pairs it is in."""
    rows, cache = [], {}
    for name, (a, b) in pairs.items():
        for run in (a, b):
            if run.key not in cache:
                cache[run.key] = stage_features(run, test_set.x, device)
        for stage in a.arch.stages:
            rows.append({"pair": name, "stage": stage, "dataset": test_set.name,
                         "cka": linear_cka(cache[a.key][stage], cache[b.key][stage])})
    return pd.DataFrame(rows)


def _split_pair(table: pd.DataFrame) -> pd.DataFrame:
    """A ``pair`` column of (type, seeds) names split into ``pair`` (type) and ``seeds``."""
    return table.assign(seeds=[str(seeds) for _, seeds in table.pair],
                        pair=[kind for kind, _ in table.pair])


def _body(state: dict, arch: Arch) -> dict:
    """Trainable-weight tensors outside the head (BN running statistics excluded)."""
    return {k: v for k, v in state.items() if not k.startswith(arch.head + ".")
            and "running_" not in k and "num_batches" not in k}


def l2_distance(state_a: dict, state_b: dict, arch: Arch) -> float:
    """||θ_a - θ_b||_2 over all body weights (head and BN statistics excluded)."""
    a, b = _body(state_a, arch), _body(state_b, arch)
    return float(torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a)))


# --------------------------------------------------------------------------- interpolation
def interpolate_states(state_a: dict, state_b: dict, lam: float) -> dict:
    """θ(λ) = (1-λ) θ_a + λ θ_b for floating tensors (exact at λ = 0, 1); integer buffers
    come from θ_a."""
    return {k: torch.lerp(a, state_b[k], lam) if a.is_floating_point() else a.clone()
            for k, a in state_a.items()}


def _stored_endpoint(run: Run, train_set, test_set) -> float | None:
    """The run's own test accuracy when re-estimating BN on ``train_set`` would reproduce its
    stored state exactly (its training set: training ends with that very recalibration) and
    ``test_set`` is its test set; None otherwise."""
    spec = run.meta.get("spec", {})
    if spec.get("train") == train_set.fingerprint and spec.get("test") == test_set.fingerprint:
        return run.accuracy
    return None


#: How an interpolated network gets its BN statistics: re-estimated on the training images at
#: every λ (the book's primary reading), or the end points' stored statistics interpolated with
#: the weights (no re-estimation; known to differ, see the chapter).
BN_MODES = ("re-estimated", "interpolated")


def interpolation_curve(run_a: Run, run_b: Run, train_set, test_set, points: int = 21,
                        device=None, bn: str = "re-estimated") -> pd.DataFrame:
    """Test accuracy along the segment between two solutions.

    ``bn="re-estimated"``: BN statistics re-estimated at every λ on ``train_set``.  At λ = 0 / 1
    the weights are exactly the endpoints'; when ``train_set`` is the runs' own training set
    their stored statistics are already that estimate, so the endpoints are the runs' own
    test accuracies (not recomputed).  ``bn="interpolated"``: the stored running statistics
    are interpolated like the weights and nothing is re-estimated (``train_set`` unused).
    """
    check_choice("bn", bn, BN_MODES)

    def compute():
        rows = []
        for lam in np.linspace(0, 1, points):
            end = (_stored_endpoint(run_a, train_set, test_set) if lam == 0 else
                   _stored_endpoint(run_b, train_set, test_set) if lam == 1 else None)
            if end is None:
                model = run_a.model(interpolate_states(run_a.state, run_b.state, float(lam)))
                if bn == "re-estimated":
                    recalibrate_bn(model, train_set.x, run_a.arch.inputs, device=device)
                end = accuracy(model, test_set, run_a.arch.inputs, device)
            rows.append({"lambda": float(lam), "accuracy": end})
        return pd.DataFrame(rows)
    spec = {"a": run_a.key, "b": run_b.key, "train": train_set.fingerprint,
            "test": test_set.fingerprint, "points": points}
    if bn != "re-estimated":
        spec["bn"] = bn
    return _cached_frame("transfer-interpolation", spec, compute,
                         (interpolation_curve, _stored_endpoint, interpolate_states, accuracy))


def barrier(curve: pd.DataFrame) -> float:
    """Largest drop of accuracy below the straight line joining the endpoints (≥ 0)."""
    lam, acc = curve["lambda"].to_numpy(), curve["accuracy"].to_numpy()
    line = (1 - lam) * acc[0] + lam * acc[-1]
    return float(max(0.0, np.max(line - acc)))


# --------------------------------------------------------------------------- criticality
def _in_stage(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _moved(key: str, value: torch.Tensor, prefixes) -> bool:
    return _in_stage(key, prefixes) and value.is_floating_point() and "running_" not in key


def rewound_state(final: dict, init: dict, prefixes, alpha: float) -> dict:
    """θ_i(α) = (1-α) θ_i^0 + α θ_i^F for the modules under ``prefixes`` (α = 1: final, 0:
    initial); all other modules keep θ^F.  BN running statistics are not moved."""
    return {k: torch.lerp(init[k], v, alpha) if _moved(k, v, prefixes) else v.clone()
            for k, v in final.items()}


def perturb(state: dict, prefixes, sigma: float, seed: int = 0) -> dict:
    """Add u ~ N(0, σ² I) to the module's weights (Chatterji et al.'s perturbation)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + sigma * torch.randn(v.shape, generator=gen) if _moved(k, v, prefixes) else v
            for k, v in state.items()}


def module_distance2(final: dict, init: dict, prefixes) -> float:
    """‖θ_i^F − θ_i^0‖² over the module's weights."""
    return float(sum(((final[k].double() - init[k].double()) ** 2).sum()
                     for k, v in final.items() if _moved(k, v, prefixes)))


def criticality_search(error: Callable[[float, float], float], alphas, sigmas,
                       epsilon: float, distance2: float) -> dict:
    """Module criticality by grid search (Chatterji, Neyshabur & Sedghi, ICLR 2020).

    μ = min over (α, σ) with ``error(α, σ) ≤ epsilon`` of α² · distance2 / σ².  For every α
    (ascending) σ is raised through ``sigmas`` (ascending) while the constraint holds, so the
    largest feasible σ of the grid is used and no σ that breaks it.  The search stops at the
    first feasible α = 0 (μ = 0: the module can be rewound all the way), and skips every α
    whose value at the largest σ could not beat the best so far (the result is the full grid
    search's; only evaluations are saved).  Returns
    {'criticality', 'alpha', 'sigma', 'evaluations'}; criticality = inf (alpha, sigma NaN)
    when no grid point is feasible.
    """
    alphas, sigmas = sorted(alphas), sorted(sigmas)
    if not alphas or not sigmas or alphas[0] < 0 or alphas[-1] > 1 or sigmas[0] <= 0 \
            or sigmas[-1] > 1:
        raise ValueError(f"criticality grid needs alphas in [0, 1] and sigmas in (0, 1], got "
                         f"alphas {alphas}, sigmas {sigmas}")
    best = {"criticality": float("inf"), "alpha": float("nan"), "sigma": float("nan")}
    evaluations = 0
    for alpha in alphas:
        if alpha > 0 and alpha ** 2 * distance2 / sigmas[-1] ** 2 >= best["criticality"]:
            break   # no σ of the grid can beat the best so far at this α or any larger one
        feasible = None
        for sigma in sigmas:
            evaluations += 1
            if error(alpha, sigma) > epsilon:
                break
            feasible = sigma
        if feasible is None:
            continue
        value = alpha ** 2 * distance2 / feasible ** 2
        if value < best["criticality"]:
            best = {"criticality": value, "alpha": alpha, "sigma": feasible}
        if alpha == 0:
            break
    return {**best, "evaluations": evaluations}


def train_error(model: torch.nn.Module, data, inputs: dict, device=None) -> float:
    return 1.0 - accuracy(model, data, inputs, device)


def module_criticality(run: Run, train_set, alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
                       sigmas=(0.001, 0.003, 0.01, 0.03, 0.1), epsilon: float = 0.05,
                       device=None) -> pd.DataFrame:
    """Criticality of every stage of ``run``, measured on its training images ``train_set``.

    The constraint is the train 0-1 error (one noise draw per point, BN re-estimated on
    ``train_set``) ≤ the trained network's own train error + ``epsilon``.  θ^0 is the
    pretrained point for P-T and the random init for RI-T.  One row per stage: criticality,
    the minimising α and σ, ‖θ^F − θ^0‖, number of evaluations, ``grid_max`` (the largest
    value the grid can give, max α² ‖θ^F − θ^0‖² / min σ²) and ``epsilon_error`` (the error
    bound used).
    """
    def compute():
        base = run.model()
        recalibrate_bn(base, train_set.x, run.arch.inputs, device=device)
        bound = train_error(base, train_set, run.arch.inputs, device) + epsilon
        rows = []
        for i, (stage, prefixes) in enumerate(run.arch.stages.items()):
            def error(alpha, sigma, prefixes=prefixes, i=i):
                state = perturb(rewound_state(run.state, run.init, prefixes, alpha), prefixes,
                                sigma, seed=i)
                model = run.model(state)
                recalibrate_bn(model, train_set.x, run.arch.inputs, device=device)
                return train_error(model, train_set, run.arch.inputs, device)
            d2 = module_distance2(run.state, run.init, prefixes)
            found = criticality_search(error, alphas, sigmas, bound, d2)
            rows.append({"stage": stage, **found, "distance": float(np.sqrt(d2)),
                         "grid_max": max(alphas) ** 2 * d2 / min(sigmas) ** 2,
                         "epsilon_error": bound})
        return pd.DataFrame(rows)
    return _cached_frame("transfer-criticality-search",
                         {"run": run.key, "train": train_set.fingerprint,
                          "alphas": sorted(alphas), "sigmas": sorted(sigmas),
                          "epsilon": epsilon}, compute,
                         (module_criticality, criticality_search, rewound_state, perturb,
                           module_distance2, train_error, _moved, _in_stage, accuracy))


# --------------------------------------------------------------------------- one target, all pairs
def _seeds(runs: dict, target: str) -> list:
    """The seeds of ``target``'s runs (block-shuffle runs, keyed with a block, excluded)."""
    return sorted({s for (t, _, s, *rest) in runs if t == target and not rest})


def seed_pairs(runs: dict, target: str, max_pairs: int | None = None) -> dict:
    """{(pair type, 'i-j'): (run_a, run_b)} for every seed pair of one target: P-T/P-T and
    RI-T/RI-T over seed pairs i < j, P-T/RI-T at equal seeds; at most ``max_pairs`` of each."""
    seeds = _seeds(runs, target)
    if len(seeds) < 2:
        raise ValueError(f"basin analysis needs ≥ 2 seeds per init on {target}, got {seeds}")
    combos = list(itertools.combinations(seeds, 2))[:max_pairs]
    pairs = {}
    for kind, init in (("P-T/P-T", "P-T"), ("RI-T/RI-T", "RI-T")):
        for i, j in combos:
            pairs[kind, f"{i}-{j}"] = (runs[target, init, i], runs[target, init, j])
    for s in seeds[:max_pairs]:
        pairs["P-T/RI-T", f"{s}-{s}"] = (runs[target, "P-T", s], runs[target, "RI-T", s])
    return pairs


def distance_table(runs: dict, target: str) -> pd.DataFrame:
    """ℓ2 distances of one target's runs: every seed pair of each type (:func:`seed_pairs`)
    and every run to its own start (P-T/pretrained, RI-T/its init); columns pair, seeds,
    l2_distance, dataset."""
    rows = [{"pair": kind, "seeds": seeds, "l2_distance": l2_distance(a.state, b.state, a.arch)}
            for (kind, seeds), (a, b) in seed_pairs(runs, target).items()]
    for s in _seeds(runs, target):
        pt, ri = runs[target, "P-T", s], runs[target, "RI-T", s]
        rows.append({"pair": "P-T/pretrained", "seeds": f"{s}-{s}",
                     "l2_distance": l2_distance(pt.state, pt.init, pt.arch)})
        rows.append({"pair": "RI-T/its init", "seeds": f"{s}-{s}",
                     "l2_distance": l2_distance(ri.state, ri.init, ri.arch)})
    return pd.DataFrame(rows).assign(dataset=target)


def criticality_table(runs: dict, target: str, images, seeds=None, device=None,
                      **grid) -> pd.DataFrame:
    """:func:`module_criticality` of every P-T and RI-T run of ``target`` (of ``seeds``, default
    all), measured on ``images``; columns of :func:`module_criticality` plus init, seed,
    dataset."""
    seeds = _seeds(runs, target) if seeds is None else list(seeds)
    return pd.concat([module_criticality(runs[target, init, s], images, device=device, **grid)
                      .assign(init=init, seed=s) for s in seeds for init in ("P-T", "RI-T")],
                     ignore_index=True).assign(dataset=target)


def basin_analysis(runs: dict, target: str, train_images, test_set, points: int = 21,
                   interpolation_pairs: int | None = None, interpolation_types=PAIR_TYPES,
                   bn_modes=BN_MODES, criticality: dict | None = None, criticality_images=None,
                   device=None) -> dict[str, pd.DataFrame]:
    """CKA per stage, ℓ2 distances, interpolation (≤ ``interpolation_pairs`` pairs of each
    type in ``interpolation_types``, under every BN treatment of ``bn_modes``) and criticality
    (of every seed's P-T and RI-T runs, keyword arguments ``criticality`` for
    :func:`module_criticality`) for one target.

    ``train_images``: the training images on which BN statistics are re-estimated along the
    interpolation path (the runs' own training set: then the endpoints are the runs' own
    accuracies); ``criticality_images`` (default ``train_images``, e.g. a seeded subset):
    where criticality's train error is measured.  Returns tables 'cka', 'distances',
    'interpolation' (with a ``bn`` column), 'criticality' (with ``init`` and ``seed``); the
    pair tables have columns ``pair`` (type) and ``seeds`` ("i-j").
    """
    for kind in interpolation_types:
        check_choice("interpolation pair type", kind, PAIR_TYPES)
    for mode in bn_modes:
        check_choice("bn mode", mode, BN_MODES)
    pairs = seed_pairs(runs, target)
    # one call: every run's stage features are computed once, not once per pair it is in
    cka = _cached_frame("transfer-cka",
                        {"pairs": [[kind, seeds, a.key, b.key]
                                   for (kind, seeds), (a, b) in pairs.items()],
                         "test": test_set.fingerprint},
                        lambda: _split_pair(pair_cka(pairs, test_set, device)),
                        (pair_cka, stage_features, linear_cka, _split_pair))
    interp = []
    for (kind, s), (a, b) in seed_pairs(runs, target, interpolation_pairs).items():
        if kind in interpolation_types:
            for mode in bn_modes:
                curve = interpolation_curve(a, b, train_images, test_set, points, device, mode)
                interp.append(curve.assign(pair=kind, seeds=s, bn=mode, barrier=barrier(curve)))
    crit_images = train_images if criticality_images is None else criticality_images
    return {"cka": cka, "distances": distance_table(runs, target),
            "interpolation": pd.concat(interp, ignore_index=True).assign(dataset=target),
            "criticality": criticality_table(runs, target, crit_images, device=device,
                                             **(criticality or {}))}


def pair_values(table: pd.DataFrame, pair: str, column: str) -> dict:
    """{(i, j): value} of one pair type of a pair table (``seeds`` "i-j"), for
    :func:`~diffred.core.stats.seed_pair_bootstrap`."""
    rows = table[table.pair == pair]
    return {tuple(int(x) for x in str(s).split("-")): float(v)
            for s, v in zip(rows.seeds, rows[column])}


def pair_frames(basin: dict) -> dict[str, pd.DataFrame]:
    """The per-pair values the verdicts read: 'cka' (mean over stages), 'l2_distance', and
    one 'barrier' table per BN treatment ('barrier', 'barrier_bn_interpolated')."""
    frames = {"cka": basin["cka"].groupby(["pair", "seeds"]).cka.mean().reset_index(),
              "l2_distance": basin["distances"]}
    interp = basin["interpolation"]
    if "bn" not in interp:
        interp = interp.assign(bn="re-estimated")
    for mode, name in (("re-estimated", "barrier"), ("interpolated", "barrier_bn_interpolated")):
        at = interp[interp.bn == mode]
        if len(at):
            frames[name] = at.groupby(["pair", "seeds"]).barrier.first().reset_index()
    return frames


def pair_summary(basin: dict) -> pd.DataFrame:
    """Per pair type: the mean over seed pairs of CKA (mean over stages), ℓ2 distance and
    barrier (per BN treatment), each with its 95% seed-bootstrap interval ``<name>_lo``,
    ``<name>_hi`` (:func:`~diffred.core.stats.seed_pair_bootstrap`: seeds resampled, not
    pairs, since pairs share runs; NaN with < 3 seeds or < 2 pairs) and ``<name>_n`` pairs."""
    frames = pair_frames(basin)
    rows = []
    for pair in dict.fromkeys(list(basin["distances"].pair)):
        row = {"pair": pair}
        for name, frame in frames.items():
            column = "barrier" if name.startswith("barrier") else name
            values = pair_values(frame, pair, column)
            if values:
                m, lo, hi = seed_pair_bootstrap(values)
                row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi,
                            f"{name}_n": len(values)})
        rows.append(row)
    return pd.DataFrame(rows)
