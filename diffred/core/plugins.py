"""Models and datasets from other installed packages, found by Python entry point.

A package makes its own model or dataset usable by name in every chapter, in papermill kernels
too, by declaring an entry point in its ``pyproject.toml``::

    [project.entry-points."diffred.models"]
    mynet = "mypkg.diffred_plugin:mynet"        # a diffred.core.models.ModelSpec

    [project.entry-points."diffred.datasets"]
    mycells = "mypkg.diffred_plugin:mycells"    # a diffred.core.datasets.DatasetSpec

The object may also be a function of no arguments returning the spec.  Its ``name`` must equal
the entry point's name, and a plugin cannot replace a built-in name.  Building a spec must be
cheap: weights and files are read by its ``build`` / ``loader`` when a chapter uses it.
``diffred assets`` lists plugins beside the built-in registry (page *Your own model and data*).
"""
from __future__ import annotations

import sys
from functools import cache
from importlib.metadata import entry_points

MODEL_GROUP = "diffred.models"
DATASET_GROUP = "diffred.datasets"


@cache
def discovered(group: str, cls: type, builtin: frozenset) -> dict:
    """``name -> spec`` of the installed entry points of ``group`` whose object is a ``cls``.

    A plugin that fails to load, returns something else, is misnamed or shadows a built-in
    name is skipped with one warning line naming its package: one broken plugin never stops
    the book.
    """
    found = {}
    for ep in entry_points(group=group):
        where = f"plugin {ep.name!r} ({ep.value}, from {getattr(ep.dist, 'name', '?')})"
        try:
            obj = ep.load()
            spec = obj if isinstance(obj, cls) else obj() if callable(obj) else obj
        except Exception as err:     # a third party's bug, reported in one line
            _warn(f"{where} failed to load: {type(err).__name__}: {err}")
            continue
        if not isinstance(spec, cls):
            _warn(f"{where} is a {type(spec).__name__}, not a {cls.__name__}")
        elif spec.name != ep.name:
            _warn(f"{where} names itself {spec.name!r}; the entry point's name must match")
        elif ep.name in builtin or ep.name in found:
            _warn(f"{where} would replace the existing name {ep.name!r}; skipped")
        else:
            found[ep.name] = spec
    return found


def _warn(message: str) -> None:
    print(f"diffred: {message}", file=sys.stderr)
