"""The exported API (``diffred.__all__``) carries numpydoc docstrings: a one-line summary, a
``Parameters`` section naming every parameter, ``Returns`` for functions (and for public methods
that return something); dataclasses document their fields under ``Attributes``.

Imports only (no model loads, no data): fast."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

import diffred

SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def sections(doc: str) -> dict[str, list[str]]:
    """numpydoc sections of a cleaned docstring: header -> its body lines (header underlined
    with dashes, at the docstring's base indentation)."""
    lines = doc.splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() and not lines[i][0].isspace()
              and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3]
    return {lines[i].strip(): lines[i + 2:end] for i, end in zip(starts, starts[1:] + [len(lines)])}


def entry_names(body: list[str]) -> set[str]:
    """Names of the ``name : type`` (or ``a, b : type``) entries of a section body."""
    names = set()
    for line in body:
        if line.strip() and not line[0].isspace():
            names.update(n.strip().lstrip("*") for n in line.split(" : ")[0].split(","))
    return names


def _parameters(func) -> list[str]:
    return [p.name for p in inspect.signature(func).parameters.values()
            if p.name not in ("self", "cls") and p.kind not in SKIPPED_KINDS]


def _returns_something(func) -> bool:
    """Annotated as returning a value (an unannotated method is not assumed to)."""
    return inspect.signature(func).return_annotation not in (None, "None", inspect.Signature.empty)


def _summary_problem(doc: str, what: str) -> list[str]:
    lines = doc.splitlines()
    if not lines or not lines[0].strip():
        return [f"{what}: no one-line summary"]
    if len(lines) > 1 and lines[1].strip():
        return [f"{what}: the summary must be one line, followed by a blank line"]
    return []


def function_problems(func, what: str, *, needs_returns: bool = True) -> list[str]:
    """What is missing from the docstring of a function or method (empty: nothing)."""
    doc = inspect.getdoc(func)
    if not doc:
        return [f"{what}: no docstring"]
    problems = _summary_problem(doc, what)
    found = sections(doc)
    params = _parameters(func)
    if params:
        if "Parameters" not in found:
            problems.append(f"{what}: no 'Parameters' section")
        else:
            missing = [p for p in params if p not in entry_names(found["Parameters"])]
            if missing:
                problems.append(f"{what}: Parameters does not name {', '.join(missing)}")
    if needs_returns and "Returns" not in found and "Yields" not in found:
        problems.append(f"{what}: no 'Returns' section")
    return problems


def class_problems(cls, what: str) -> list[str]:
    """What is missing from a class's docstring and from those of its public methods."""
    doc = inspect.getdoc(cls)
    if not doc:
        return [f"{what}: no docstring"]
    problems = _summary_problem(doc, what)
    found = sections(doc)
    kinds = ("Attributes",) if dataclasses.is_dataclass(cls) else ("Parameters", "Attributes")
    if not any(k in found for k in kinds):
        problems.append(f"{what}: no {' or '.join(repr(k) for k in kinds)} section")
    documented = entry_names(found.get("Parameters", [])) | entry_names(found.get("Attributes", []))
    missing = [p for p in _parameters(cls) if p not in documented]
    if missing:
        problems.append(f"{what}: the class docstring does not name {', '.join(missing)}")
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            doc = member.__doc__ and inspect.cleandoc(member.__doc__)   # no inherited doc
            problems += _summary_problem(doc, f"{what}.{name}") if doc else \
                [f"{what}.{name}: no docstring"]
        elif inspect.isfunction(member):
            problems += function_problems(member, f"{what}.{name}",
                                          needs_returns=_returns_something(member))
    return problems


def docstring_problems(obj, what: str) -> list[str]:
    if inspect.isclass(obj):
        return class_problems(obj, what)
    return function_problems(obj, what)


EXPORTED = [name for name in diffred.__all__ if callable(getattr(diffred, name))]
#: exported modules and the functions of theirs a reader calls
MODULE_VERBS = {"results": ["load", "read_table"]}


def test_every_export_is_checked():
    data = {name for name in diffred.__all__ if name not in EXPORTED}
    # plain registries (dicts), no docstring of their own; modules: their verbs are checked
    assert data == {"DATASETS", "MODELS", *MODULE_VERBS}
    assert {"Chapter", "LinearProbe", "features", "load_model"} <= set(EXPORTED)


@pytest.mark.parametrize("name", EXPORTED + [f"{m}.{f}" for m, fs in MODULE_VERBS.items()
                                             for f in fs])
def test_exported_docstring(name):
    obj = diffred
    for part in name.split("."):
        obj = getattr(obj, part)
    assert docstring_problems(obj, name) == []


# --------------------------------------------------------------------------- the checker itself
def _good(X, y, *, k: int = 1):
    """Score X.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    y, k : ndarray of shape (n_samples,), int
        Labels; k neighbours.

    Returns
    -------
    float
        The score.
    """


def _bad(X, y, *, k: int = 1):
    """Score X
    on several lines.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Mentions y and k only in prose.
    """


class _GoodEstimator:
    """An estimator.

    Parameters
    ----------
    C : float
        Strength.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def score(self, X) -> float:
        """Score.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        float
        """

    def reset(self) -> None:
        """Forget the fit (no arguments, returns nothing: no sections needed)."""

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` ran (a property: a summary is enough)."""


class _BadEstimator(_GoodEstimator):
    """An estimator whose docstring has no sections."""

    def __init__(self, C: float = 1.0, tol: float = 1e-4):
        self.C, self.tol = C, tol

    def score(self, X) -> float:
        """Score X (no sections)."""

    @property
    def fitted(self) -> bool:
        return False


@dataclasses.dataclass
class _BadRecord:
    """A record.

    Parameters
    ----------
    X : ndarray
        Only X is named, and under Parameters rather than Attributes.
    """
    X: object
    y: object


def test_checker_accepts_good_docstrings():
    assert docstring_problems(_good, "good") == []
    assert docstring_problems(_GoodEstimator, "Good") == []


def test_checker_rejects_bad_docstrings():
    problems = docstring_problems(_bad, "bad")
    assert "bad: the summary must be one line, followed by a blank line" in problems
    assert "bad: Parameters does not name y, k" in problems
    assert "bad: no 'Returns' section" in problems
    problems = docstring_problems(_BadEstimator, "Bad")
    assert "Bad: no 'Parameters' or 'Attributes' section" in problems
    assert "Bad: the class docstring does not name C, tol" in problems
    assert "Bad.score: no 'Parameters' section" in problems
    assert "Bad.score: no 'Returns' section" in problems
    assert "Bad.fitted: no docstring" in problems
    problems = docstring_problems(_BadRecord, "Record")
    assert "Record: no 'Attributes' section" in problems
    assert "Record: the class docstring does not name y" in problems
    assert docstring_problems(lambda x: x, "lambda") == ["lambda: no docstring"]
