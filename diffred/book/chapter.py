"""The book's chapters: where they are, their parameters (rules from each study), and the prologue.

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
from diffred.core.errors import DiffredError
from diffred.core.params import ParameterError, Schema, apply_quick
from diffred.core.paths import BOOK_DIR, PROJECT_DIR
from diffred.studies.diffuse import params as diffuse_params
from diffred.studies.fewshot import params as fewshot_params
from diffred.studies.neurons import params as neurons_params
from diffred.studies.transfer import params as transfer_params

CHAPTERS_DIR = BOOK_DIR / "chapters"
#: parameters that mean the same thing in every chapter that has them; ``diffred book -p NAME``
#: hands these to every such chapter (any other name belongs to one chapter, or is qualified:
#: ``-p 04.resnet_resolution 32``)
SHARED = ("quick", "device", "precision", "threads", "seed", "seeds", "resolution", "fractions",
          "C", "max_iter", "models", "datasets", "n_per_class", "workers")


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
#: each chapter's parameter rules live with its study (``diffred/studies/<name>/params.py``)
SCHEMAS: dict[str, Schema] = {s.chapter: s for s in (
    diffuse_params.SCHEMA, neurons_params.SCHEMA, fewshot_params.SCHEMA, transfer_params.SCHEMA)}


def schema(chapter: str) -> Schema:
    stem = resolve_chapter(chapter).stem
    if stem not in SCHEMAS:
        raise DiffredError(f"chapter {stem} has no parameter rules (diffred/studies/<name>/params.py)")
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
    else:                                  # an old name injected by papermill is refused too
        for old in sorted(set(rules.renamed) & set(namespace)):
            rules.check_name(old)
        values = {k: namespace.get(k, v) for k, v in defaults.items()}
    if rules.value("quick", values["quick"]):
        values = apply_quick(values, defaults, quick_preset(path) if preset is None else preset)
    return rules.check(values)


# --------------------------------------------------------------------------- the prologue
class Chapter:
    """A running chapter: checked parameters, charts set up, timer started, result tables.

    The prologue also sets the process precision (:func:`diffred.core.precision.use`) from the
    ``precision`` parameter and, when a ``threads`` parameter is set, torch's thread count.

    Parameters
    ----------
    name : str
        Chapter name (``"01_diffuse_redundancy"``, ``"01"``, ...).
    namespace : dict
        The notebook's ``globals()``: parameters are read from it, and the quick preset and
        normalised values are written back into it.
    quick_preset : dict, optional
        Values used when ``quick`` is True for parameters left at their defaults.

    Attributes
    ----------
    name : str
        The chapter's file stem (``"01_diffuse_redundancy"``).
    params : dict
        Every parameter, checked (:func:`resolve_parameters`).
    defaults : dict
        The literals of the chapter's ``parameters`` cell.
    results : diffred.book.results.ResultSet
        The result tables staged so far.
    started : float
        ``time.perf_counter()`` at the prologue.
    sections : list of (str, float)
        (section name, wall seconds), in order.
    weights : dict of str to str
        Weights hash of each model used, for the provenance.
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
        if "workers" in self.params:                    # where its units of work run
            from diffred.core import engine
            engine.use(self.params["workers"] or None)  # 0: DIFFRED_CLUSTER, else serial
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
        """Wall seconds since the prologue."""
        return time.perf_counter() - self.started

    def section(self, name: str) -> None:
        """Start timing section ``name`` (the previous one, if any, ends here).

        Parameters
        ----------
        name : str
            The section's name in the provenance.
        """
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
        """Record the weights hash of a model the chapter used.

        Tables with ``model`` and ``weights`` columns are recorded by :meth:`save` already.

        Parameters
        ----------
        model : str
            The model's name.
        weights : str
            Its weights hash; empty: nothing is recorded.
        """
        if weights:
            self.weights[str(model)] = str(weights)

    def save(self, df, name: str) -> Path:
        """Stage a result table, with the chapter's parameters as provenance.

        It reaches ``<results>/<chapter>/`` with all the others when the chapter finishes.
        The time since the previous table (or :meth:`section` mark) is recorded as the wall
        time of the section that produced it (named ``name`` unless a :meth:`section` is
        open), and the table's ``(model, weights)`` pairs as weights hashes of the provenance.

        Parameters
        ----------
        df : pandas.DataFrame
            The tidy table, one row per measurement (optional ``model`` and ``weights``
            columns).
        name : str
            The table's name: it is written as ``<name>.csv``, with ``<name>.json`` provenance.

        Returns
        -------
        pathlib.Path
            Where the table will be: ``<results>/<chapter>/<name>.csv``.
        """
        self._close_section(default=name)
        if {"model", "weights"} <= set(getattr(df, "columns", ())):
            for model, weights in df[["model", "weights"]].drop_duplicates().itertuples(
                    index=False):
                if isinstance(weights, str):
                    self.note_weights(model, weights)
        return self.results.save(df, name, **self.params)

    def provenance_data(self) -> dict:
        """The provenance of this run (what ``provenance.json`` holds).

        Returns
        -------
        dict
            Commit, changed parameters, hardware, precision, speed paths, versions, weights
            hashes, section wall times and total wall time of this run.
        """
        return _prov.collect(self.name, self.changed, self.params.get("device"), self.weights,
                             self.sections, self.elapsed)

    def provenance(self):
        """Show the provenance panel (a collapsible block).

        :meth:`finish` updates it in place with the final section times."""
        from IPython.display import HTML, display
        self._panel = display(HTML(_prov.panel_html(self.provenance_data(), final=False)),
                              display_id=True)

    def finish(self) -> str:
        """End the chapter: every staged table swapped into ``<results>/<chapter>/`` at once.

        An interrupted run leaves the previous tables intact.  ``provenance.json`` is written
        with the tables and the provenance panel (if shown) is updated.

        Returns
        -------
        str
            The chapter's compute time and the tables' folder, as a line.
        """
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
