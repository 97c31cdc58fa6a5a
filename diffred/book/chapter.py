"""The book's chapters: where they are, their parameters' rules, and the prologue every one opens with.

Every chapter opens the same way — a ``parameters`` cell (defaults), one cell tagged ``quick`` (the
smoke-test preset), and the prologue::

    ch = diffred.Chapter("01_diffuse_redundancy", globals(), quick_preset)

which applies the quick preset to the parameters still at their defaults (explicit ``-p`` values
win), checks every parameter against :data:`SCHEMAS` before anything is computed, sets up the
charts (house theme and offline renderer), starts the timer, and collects the result tables
(``ch.save(df, "probe_runs")``) with their provenance; ``ch.finish()`` ends the chapter and
swaps its tables into ``<results>/<chapter>/`` together.  ``ch.provenance()`` shows the run's
provenance (commit, changed parameters, hardware, precision, versions, weights hashes, section
times) near the top of the page; ``ch.finish()`` updates that panel and writes the same data
as ``provenance.json`` beside the tables.
"""
from __future__ import annotations

import ast
import time
from pathlib import Path

from diffred.book import provenance as _prov
from diffred.book.params import (
    Bool,
    Choice,
    Float,
    Int,
    ListOf,
    Pair,
    ParameterError,
    Rule,
    Schema,
    apply_quick,
    dataset_names,
    model_names,
)
from diffred.core.errors import DiffredError
from diffred.core.paths import PROJECT_DIR
from diffred.core.precision import PRECISIONS

CHAPTERS_DIR = PROJECT_DIR / "chapters"
#: parameters that mean the same thing in every chapter that has them; ``diffred book -p NAME``
#: hands these to every such chapter (any other name belongs to one chapter, or is qualified:
#: ``-p 04.resnet_resolution 32``)
SHARED = ("quick", "device", "precision", "threads", "seed", "resolution", "fractions", "C",
          "max_iter")


# --------------------------------------------------------------------------- where they are
def chapters() -> dict[str, Path]:
    """Chapter name (file stem) -> MyST notebook path."""
    return {p.stem: p for p in sorted(CHAPTERS_DIR.glob("[0-9][0-9]_*.md"))}


def resolve_chapter(name: str) -> Path:
    """'01_diffuse_redundancy', '01', '1' or 'diffuse_redundancy' -> path."""
    found = chapters()
    key = name[:-3] if name.endswith(".md") else Path(name).stem
    for stem, path in found.items():
        number, _, title = stem.partition("_")
        if key in (stem, number, number.lstrip("0"), title):
            return path
    raise DiffredError(f"unknown chapter {name!r}; valid choices: {', '.join(found)}")


def _tagged_cell(path: Path, tag: str) -> str | None:
    import jupytext
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "code" and tag in cell.metadata.get("tags", []):
            return cell.source
    return None


def chapter_defaults(path: Path) -> dict:
    """Names and default values of the chapter's ``parameters`` cell (literals only)."""
    source = _tagged_cell(path, "parameters")
    if source is None:
        raise DiffredError(f"{path.name} has no cell tagged 'parameters'")
    params = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
    return params


def quick_preset(path: Path) -> dict:
    """The literal ``quick_preset = dict(...)`` of the chapter's cell tagged ``quick``."""
    source = _tagged_cell(path, "quick")
    if source is None:
        return {}
    namespace: dict = {}
    exec(compile(source, str(path), "exec"), {"__builtins__": {"dict": dict}}, namespace)
    return dict(namespace.get("quick_preset", {}))


# --------------------------------------------------------------------------- rules
_POS = Float(0, open_low=True)
_FRACTION = Float(0, 1, open_low=True)
_DEVICE = Choice(choices=("cpu", "cuda", "mps"), prefixes=("cuda:",), optional=True)
#: arithmetic of features, probes and training (:mod:`diffred.core.precision`); the prologue makes
#: it the setting of every call in the chapter
_PRECISION = Choice(choices=PRECISIONS)
#: torch CPU threads; None keeps torch's default (one per core)
_THREADS = Int(1, optional=True)


def _tasks():
    from diffred.studies.neurons.method import SENTENCE_TASKS, TOKEN_TASKS
    return list(TOKEN_TASKS) + list(SENTENCE_TASKS)


def _subset(item: str, among: str):
    def check(p):
        return None if p[item] in p[among] else f"{item} {p[item]!r} must be one of {among} {p[among]!r}"
    return check


def _divides(blocks: str, size: str):
    def check(p):
        bad = [b for b in p[blocks] if p[size] % b]
        return (f"{blocks} {bad!r} must divide {size} = {p[size]} (valid: "
                f"{[b for b in range(1, p[size] + 1) if p[size] % b == 0]})" if bad else None)
    return check


def _saved_final(p):
    bad = [e for e in p["save_epochs"] if e > p["pretrain_epochs"]]
    if bad:
        return f"save_epochs {bad!r} exceed pretrain_epochs = {p['pretrain_epochs']}"
    if p["pretrain_epochs"] not in p["save_epochs"]:
        return (f"save_epochs {p['save_epochs']!r} must include pretrain_epochs = "
                f"{p['pretrain_epochs']} (the fine-tuning start point)")
    return None


def _mask_shots(p):
    """Soft-mask supports come from the view candidates of one half (selection or report)."""
    sel = int(round(p["selection_share"] * p["view_candidates_per_class"]))
    room = min(sel, p["view_candidates_per_class"] - sel)
    bad = [k for k in p["mask_shots"] if k > room]
    return (f"mask_shots {bad!r} exceed the {room} view candidates per class of the smaller "
            f"half (view_candidates_per_class = {p['view_candidates_per_class']}, "
            f"selection_share = {p['selection_share']}; soft-mask supports need augmented "
            f"views)" if bad else None)


SCHEMAS: dict[str, Schema] = {s.chapter: s for s in [
    Schema("01_diffuse_redundancy", {
        "quick": Bool(), "vision_models": ListOf(model_names("vision")),
        "paper_models": Bool(), "vision_datasets": ListOf(dataset_names("image")),
        "text_models": ListOf(model_names("text")),
        "text_datasets": ListOf(dataset_names("text", "text_pair")),
        "resolution": Int(32, optional=True), "train_per_class": Int(1),
        "full_train_datasets": ListOf(dataset_names("image"), min_len=0),
        "test_per_class": Int(1), "text_train_n": Int(2), "text_test_n": Int(2),
        "curve_models": ListOf(model_names("vision"), min_len=0),
        "curve_train_per_class": ListOf(Int(1), min_len=0),
        "fractions": ListOf(_FRACTION), "n_seeds": Int(1), "cka_sizes": ListOf(Int(1)),
        "baselines": ListOf(Choice(choices=("pca_top", "pca_bottom", "randproj_uniform",
                                            "randproj_gaussian")), min_len=0),
        "baseline_models": ListOf(model_names("vision"), min_len=0),
        "baseline_datasets": ListOf(dataset_names("image"), min_len=0),
        "layer_models": ListOf(model_names("vision"), min_len=0),
        "layer_datasets": ListOf(dataset_names("image"), min_len=0),
        "intermediate_layers": ListOf(Rule(), min_len=0),
        "dr_deltas": ListOf(_FRACTION), "C": _POS, "max_iter": Int(1), "device": _DEVICE,
        "precision": _PRECISION,
    }),
    Schema("02_transformer_redundancy", {
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
        "percentages": ListOf(_FRACTION, optional=True), "C": _POS, "max_iter": Int(1),
        "random_seeds": Int(1), "seed": Int(0), "device": _DEVICE, "precision": _PRECISION,
    }),
    Schema("03_fewshot_soft_mask", {
        "quick": Bool(), "backbones": ListOf(model_names("vision")),
        "datasets": ListOf(dataset_names("image")), "split": Choice(choices=("train", "test")),
        "n_per_class": Int(2), "resolution": Int(32, optional=True), "views": Int(1),
        "view_candidates_per_class": Int(2), "n_way": Int(2), "shots": ListOf(Int(1)),
        "fractions": ListOf(_FRACTION), "two_way_shots": ListOf(Int(1)),
        "mask_shots": ListOf(Int(1)), "selection_share": Float(0, 1, open_low=True,
                                                               open_high=True),
        "shrink_grid": ListOf(Float(0)), "topk_grid": ListOf(_FRACTION), "n_query": Int(1),
        "n_episodes": Int(2), "n_episodes_high_shot": Int(2), "n_selection_episodes": Int(2),
        "fdr": Float(0, 1, open_low=True, open_high=True), "simulation_shots": ListOf(Int(1)),
        "confounder_backbone": model_names("vision"),
        "confounder_dataset": dataset_names("image"), "seed": Int(0), "device": _DEVICE,
        "precision": _PRECISION, "threads": _THREADS,
    }, (_subset("confounder_backbone", "backbones"), _subset("confounder_dataset", "datasets"),
        _mask_shots)),
    Schema("04_transfer_basin", {
        "quick": Bool(), "device": _DEVICE, "precision": _PRECISION, "seeds": ListOf(Int(0), min_len=2),
        "threads": _THREADS, "validation_fraction": Float(0, 1, open_low=True, open_high=True),
        "selection_seed": Int(0), "official_lr_arms": ListOf(Choice(["real", "controlled"])),
        "real_targets": ListOf(dataset_names("image")), "real_resolution": Int(32),
        "real_per_class": Int(2), "real_test_per_class": Int(1), "real_epochs": Int(1),
        "real_lr_grid": ListOf(_POS), "real_analysis_target": dataset_names("image"),
        "real_blocks": ListOf(Int(1)), "real_interpolation_pairs": Int(1),
        "real_interpolation_types": ListOf(Choice(["P-T/P-T", "RI-T/RI-T", "P-T/RI-T"]),
                                           min_len=1),
        "real_analysis_images": Int(2), "real_criticality_alphas": ListOf(Float(0, 1)),
        "real_criticality_sigmas": ListOf(Float(0, 1, open_low=True)),
        "source": dataset_names("image"), "source_seed": Int(0),
        "source_per_class": Int(1), "source_test_per_class": Int(1), "resnet_width": Int(1),
        "resnet_resolution": Int(4), "pretrain_epochs": Int(1), "pretrain_lr": _POS,
        "save_epochs": ListOf(Int(0)), "targets": ListOf(dataset_names("image")),
        "target_per_class": Int(2), "target_test_per_class": Int(1), "finetune_epochs": Int(1),
        "lr_grid": ListOf(_POS), "analysis_target": dataset_names("image"),
        "analysis_images": Int(2), "checkpoint_seeds": Int(1),
        "blocks": ListOf(Int(1)), "interpolation_points": Int(2),
        "criticality_alphas": ListOf(Float(0, 1)),
        "criticality_sigmas": ListOf(Float(0, 1, open_low=True)),
        "criticality_epsilon": Float(0, 1),
    }, (_subset("analysis_target", "targets"), _subset("real_analysis_target", "real_targets"),
        _divides("blocks", "resnet_resolution"), _divides("real_blocks", "real_resolution"),
        _saved_final)),
]}


def schema(chapter: str) -> Schema:
    stem = resolve_chapter(chapter).stem
    if stem not in SCHEMAS:
        raise DiffredError(f"chapter {stem} has no parameter rules in diffred.book.chapter.SCHEMAS")
    return SCHEMAS[stem]


def resolve_parameters(chapter: str, explicit: dict, namespace: dict | None = None,
                       preset: dict | None = None) -> dict:
    """Every parameter of ``chapter``: defaults, then the quick preset (when ``quick``) for the
    ones not set explicitly, then ``explicit`` (strings from the shell are parsed); checked.

    ``namespace`` (inside a running chapter: its ``globals()``) replaces the defaults +
    explicit values: what differs from the default there was set explicitly.  ``preset``: the
    quick preset (default: the literal of the chapter's cell tagged ``quick``)."""
    path = resolve_chapter(chapter)
    rules = schema(path.stem)
    defaults = chapter_defaults(path)
    undeclared = sorted(set(defaults) ^ set(rules.rules))
    if undeclared:
        raise DiffredError(f"chapter {path.stem}: parameters cell and rules disagree on "
                           f"{', '.join(undeclared)}")
    if namespace is None:
        values = {**defaults, **{k: rules.value(k, v) for k, v in explicit.items()}}
    else:
        values = {k: namespace.get(k, v) for k, v in defaults.items()}
    if rules.value("quick", values["quick"]):
        values = apply_quick(values, defaults, quick_preset(path) if preset is None else preset)
    return rules.check(values)


# --------------------------------------------------------------------------- the prologue
class Chapter:
    """A running chapter: checked parameters, charts set up, timer started, result tables.

    Parameters
    ----------
    name : str
        Chapter name (``"01_diffuse_redundancy"``, ``"01"``, ...).
    namespace : dict
        The notebook's ``globals()``: parameters are read from it, and the quick preset and
        normalised values are written back into it.
    quick_preset : dict, optional
        Values used when ``quick`` is True for parameters left at their defaults.
    """

    def __init__(self, name: str, namespace: dict, quick_preset: dict | None = None):
        path = resolve_chapter(name)
        self.name = path.stem
        self.params = resolve_parameters(self.name, {}, namespace, quick_preset or {})
        self.defaults = chapter_defaults(path)
        namespace.update(self.params)
        from diffred.core import precision
        precision.use(self.params["precision"])
        if self.params.get("threads") is not None:      # a chapter's `threads` parameter
            import torch
            torch.set_num_threads(self.params["threads"])
        _prov.quiet()
        from diffred.book.results import ResultSet
        from diffred.core import plots
        plots.setup()
        self.results = ResultSet(self.name)
        self.started = time.perf_counter()
        self.sections: list[tuple[str, float]] = []   # (name, seconds), in order
        self.weights: dict[str, str] = {}             # model -> weights hash
        self._mark = (None, self.started)
        self._panel = None

    @property
    def changed(self) -> dict:
        """The parameters that differ from the chapter's defaults."""
        return {k: v for k, v in self.params.items() if v != self.defaults.get(k)}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def section(self, name: str) -> None:
        """Start timing section ``name`` (the previous one, if any, ends here)."""
        self._close_section()
        self._mark = (name, time.perf_counter())

    def _close_section(self, default: str | None = None) -> None:
        name, since = self._mark
        now = time.perf_counter()
        name = name or default
        if name is not None:
            self.sections.append((name, now - since))
            self._mark = (None, now)

    def note_weights(self, model: str, weights: str) -> None:
        """Record the weights hash of a model the chapter used (tables with ``model`` and
        ``weights`` columns are recorded by :meth:`save` already)."""
        if weights:
            self.weights[str(model)] = str(weights)

    def save(self, df, name: str) -> Path:
        """Stage a result table, with the chapter's parameters as provenance; it reaches
        ``<results>/<chapter>/`` with all the others when the chapter finishes.

        The time since the previous table (or :meth:`section` mark) is recorded as the wall
        time of the section that produced it, and the table's ``(model, weights)`` pairs as
        weights hashes of the provenance."""
        self._close_section(default=name)
        if {"model", "weights"} <= set(getattr(df, "columns", ())):
            for model, weights in df[["model", "weights"]].drop_duplicates().itertuples(
                    index=False):
                if isinstance(weights, str):
                    self.note_weights(model, weights)
        return self.results.save(df, name, **self.params)

    def provenance_data(self) -> dict:
        """Commit, changed parameters, hardware, precision, versions, weights hashes and
        section wall times of this run (what ``provenance.json`` holds)."""
        return _prov.collect(self.name, self.changed, self.params.get("device"), self.weights,
                             self.sections, self.elapsed)

    def provenance(self):
        """Show the provenance panel (a collapsible block); :meth:`finish` updates it in
        place with the final section times."""
        from IPython.display import HTML, display
        self._panel = display(HTML(_prov.panel_html(self.provenance_data(), final=False)),
                              display_id=True)

    def finish(self) -> str:
        """End of the chapter: every staged table swapped into ``<results>/<chapter>/`` at once
        (an interrupted run leaves the previous tables intact), with ``provenance.json``; the
        provenance panel updated; its compute time, as a line."""
        import json
        self._close_section()
        data = self.provenance_data()
        self.results.save_file("provenance.json",
                               json.dumps(data, indent=1, default=str).encode())
        if self._panel is not None:
            from IPython.display import HTML
            self._panel.update(HTML(_prov.panel_html(data, final=True)))
        folder = self.results.commit()
        try:
            folder = folder.resolve().relative_to(PROJECT_DIR)
        except ValueError:
            pass
        return f"chapter compute time: {self.elapsed:.0f} s; tables in {folder}/"


__all__ = ["Chapter", "ParameterError", "SCHEMAS", "SHARED", "chapter_defaults", "chapters",
           "quick_preset", "resolve_chapter", "resolve_parameters", "schema"]
