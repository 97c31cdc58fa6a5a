"""Chapter parameters: read from the shell, checked against rules before anything runs.

A chapter's ``parameters`` cell gives each parameter its default; its study's ``params`` module
(e.g. :mod:`diffred.studies.diffuse.params`) gives it a :class:`Rule` in a :class:`Schema`.
:func:`parse` turns a command-line string into a value (YAML/Python lists and comma-separated
values alike: ``[cifar10]``, ``cifar10,elpv``, ``[0.1, 0.2]``, ``0.1,0.2``);
``Rule.check`` validates it and returns the normalised value, or raises :class:`ParameterError`
naming the bad value and the valid choices.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffred.core.errors import DiffredError
from diffred.core.precision import PRECISIONS


class ParameterError(DiffredError, ValueError):
    """A chapter parameter with a bad name or value (one line: the value and the valid choices)."""


class Invalid(ValueError):
    """Raised by a rule; the caller adds the parameter's name and chapter."""


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True, kw_only=True)
class Rule:
    """Base rule: ``check(value)`` returns the normalised value or raises :class:`Invalid`."""
    optional: bool = False          # None allowed
    doc: str = ""

    def check(self, value):
        if value is None:
            if self.optional:
                return None
            raise Invalid(f"None is not allowed; expected {self.expected()}")
        return self._check(value)

    def _check(self, value):
        return value

    def expected(self) -> str:
        return "a value"

    @property
    def is_list(self) -> bool:
        return False


@dataclass(frozen=True)
class Bool(Rule):
    def _check(self, value):
        if not isinstance(value, bool):
            raise Invalid(f"expected True or False, got {value!r}")
        return value

    def expected(self):
        return "True or False"


@dataclass(frozen=True)
class Number(Rule):
    """An int (``integer=True``) or float in [low, high]; ``open_low``/``open_high`` exclude ends."""
    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    open_high: bool = False

    def _check(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected {self.expected()}, got {value!r}")
        if self.integer:
            if float(value) != int(value):
                raise Invalid(f"expected {self.expected()}, got {value!r}")
            value = int(value)
        low_bad = self.low is not None and (value < self.low or (self.open_low and value == self.low))
        high_bad = self.high is not None and (value > self.high
                                              or (self.open_high and value == self.high))
        if low_bad or high_bad:
            raise Invalid(f"{value!r} is out of range; expected {self.expected()}")
        return value

    def expected(self):
        kind = "an integer" if self.integer else "a number"
        lo = "" if self.low is None else ("(" if self.open_low else "[") + f"{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}" + (")" if self.open_high else "]")
        if lo and hi:
            return f"{kind} in {lo}, {hi}"
        if lo:
            return f"{kind} {'>' if self.open_low else '>='} {self.low:g}"
        if hi:
            return f"{kind} {'<' if self.open_high else '<='} {self.high:g}"
        return kind


def Int(low=None, high=None, **kw) -> Number:
    return Number(low=low, high=high, integer=True, **kw)


def Float(low=None, high=None, **kw) -> Number:
    return Number(low=low, high=high, **kw)


@dataclass(frozen=True)
class Choice(Rule):
    """One of ``choices`` (a sequence, or a function returning it: registries are read lazily);
    ``prefixes`` also admits any value starting with one of them (e.g. ``timm:``), which
    ``check_prefixed`` (if given) may refuse by raising an error whose message names why."""
    choices: Any = ()
    prefixes: tuple = ()
    check_prefixed: Any = None

    def options(self) -> list:
        return list(self.choices() if callable(self.choices) else self.choices)

    def _check(self, value):
        if isinstance(value, str) and any(value.startswith(p) and len(value) > len(p)
                                          for p in self.prefixes):
            if self.check_prefixed is not None:
                try:
                    self.check_prefixed(value)
                except (DiffredError, ValueError) as err:
                    raise Invalid(str(err)) from None
            return value
        options = self.options()
        if value not in options:
            raise Invalid(f"unknown value {value!r}; valid choices: {self.expected()}")
        return value

    def expected(self):
        return ", ".join([str(o) for o in self.options()] + [f"{p}<name>" for p in self.prefixes])


@dataclass(frozen=True)
class ListOf(Rule):
    """A non-empty list (``min_len``) of items that each pass ``item``; ``unique`` rejects repeats."""
    item: Rule = field(default_factory=Rule)
    min_len: int = 1
    max_len: int | None = None
    unique: bool = True

    @property
    def is_list(self) -> bool:
        return True

    def _check(self, value):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = [value]
        out = []
        for v in value:
            try:
                out.append(self.item.check(v))
            except Invalid as err:
                raise Invalid(f"item {v!r}: {err}") from None
        if len(out) < self.min_len:
            raise Invalid(f"expected at least {self.min_len} item(s) of {self.item.expected()}, "
                          f"got {list(value)!r}")
        if self.max_len is not None and len(out) > self.max_len:
            raise Invalid(f"expected at most {self.max_len} item(s), got {list(value)!r}")
        if self.unique and len({repr(v) for v in out}) < len(out):
            raise Invalid(f"repeated items in {list(value)!r}")
        return out

    def expected(self):
        return f"a list of {self.item.expected()}"


@dataclass(frozen=True)
class Pair(Rule):
    """A list of exactly two items passing ``item`` (e.g. a (δ_L, δ_N) pair)."""
    item: Rule = field(default_factory=Rule)

    def _check(self, value):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise Invalid(f"expected a pair [a, b] of {self.item.expected()}, got {value!r}")
        return [self.item.check(v) for v in value]

    def expected(self):
        return f"a pair [a, b] of {self.item.expected()}"


# --------------------------------------------------------------------------- registries
def model_names(kind: str | None = None) -> Choice:
    """Offline models and plugins of ``kind`` ('vision' | 'text') by name, or any hub name."""
    def names():
        from diffred.core.models import registered_models
        return [n for n, s in registered_models().items() if kind is None or s.kind == kind]
    prefixes = {"vision": ("timm:",), "text": ("hf:",)}.get(kind, ("timm:", "hf:"))
    return Choice(choices=names, prefixes=prefixes)


def dataset_names(*kinds: str) -> Choice:
    """Datasets whose kind is one of ``kinds`` ('image', 'text', 'text_pair', 'tokens'), by
    registry or plugin name, or (images, sentences) your own by path or hub name
    (:mod:`diffred.core.datasources`), checked to exist and be of the right kind."""
    def names():
        from diffred.core.datasets import registered_datasets
        return [n for n, s in registered_datasets().items() if not kinds or s.kind in kinds]

    def check(name):
        from diffred.core.datasets import dataset_spec
        spec = dataset_spec(name)
        if kinds and spec.kind not in kinds:
            raise ValueError(f"{name!r} holds {spec.kind} items; expected {' or '.join(kinds)}")
    prefixes = ("imagefolder:", "npz:", "hf:") if not kinds or "image" in kinds else \
        ("hf:",) if {"text", "text_pair"} & set(kinds) else ()
    return Choice(choices=names, prefixes=prefixes, check_prefixed=check)


# --------------------------------------------------------------------------- parsing
def _literal(text: str):
    """A Python literal, else a YAML scalar/list, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text.strip() in ("null", "~", "None"):
        return None
    try:
        import yaml
        value = yaml.safe_load(text)
    except Exception:  # not YAML either: a plain string
        return text
    return text if value is None else value


def parse(raw, rule: Rule):
    """A command-line string ``raw`` as the value ``rule`` expects (non-strings pass through).

    Lists may be written ``[a, b]`` or ``a,b``; a bare scalar becomes a one-item list; a name
    that looks like a number (``123``) stays a string where a string is expected."""
    if not isinstance(raw, str):
        return raw
    value = _literal(raw)
    if rule.is_list and isinstance(value, str):
        value = [_literal(v.strip()) for v in value.split(",") if v.strip()]
    if isinstance(rule, Choice) and not isinstance(value, str) and value is not None:
        return raw
    if rule.is_list and isinstance(value, (list, tuple)) and isinstance(
            getattr(rule, "item", None), Choice):
        value = [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                 for v in value]
    return value


# --------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Schema:
    """The rules of one chapter's parameters, plus cross-parameter ``constraints``: functions of
    the parameter dict returning an error message (naming the values) or None; ``renamed``:
    old name -> new name, for a one-line error that names the new one."""
    chapter: str
    rules: dict
    constraints: tuple[Callable[[dict], str | None], ...] = ()
    renamed: dict = field(default_factory=dict)

    def rule(self, name: str) -> Rule:
        self.check_name(name)
        if name not in self.rules:
            raise ParameterError(f"unknown parameter {name!r} for chapter {self.chapter}; "
                                 f"valid choices: {', '.join(self.rules)}")
        return self.rules[name]

    def check_name(self, name: str) -> None:
        """Refuse an old parameter name, naming the new one."""
        if name in self.renamed:
            raise ParameterError(f"parameter {name!r} of chapter {self.chapter} is now called "
                                 f"{self.renamed[name]!r}")

    def value(self, name: str, raw):
        """Parse (from a string) and check one parameter; ParameterError names it."""
        rule = self.rule(name)
        try:
            return rule.check(parse(raw, rule))
        except Invalid as err:
            raise ParameterError(f"bad value {raw!r} for parameter {name!r} of chapter "
                                 f"{self.chapter}: {err}") from None

    def check(self, params: dict) -> dict:
        """All parameters checked (each rule, then every constraint); returns normalised values."""
        missing = [n for n in self.rules if n not in params]
        if missing:
            raise ParameterError(f"chapter {self.chapter} is missing parameters "
                                 f"{', '.join(missing)}")
        out = {name: self.value(name, params[name]) for name in params}
        for constraint in self.constraints:
            problem = constraint(out)
            if problem:
                raise ParameterError(f"chapter {self.chapter}: {problem}")
        return out


def apply_quick(params: dict, defaults: dict, preset: dict) -> dict:
    """``params`` with the quick ``preset`` applied to every parameter still at its default.

    A parameter whose value differs from the ``parameters`` cell's default was set explicitly
    (``-p name value``) and wins over the preset."""
    unknown = [k for k in preset if k not in defaults]
    if unknown:
        raise ParameterError(f"quick preset names unknown parameters {', '.join(unknown)}")
    return {k: (preset[k] if k in preset and v == defaults.get(k) else v)
            for k, v in params.items()}


# --------------------------------------------------------------------------- shared rules
POSITIVE = Float(0, open_low=True)
FRACTION = Float(0, 1, open_low=True)
DEVICE = Choice(choices=("cpu", "cuda", "mps"), prefixes=("cuda:",), optional=True)
#: torch CPU threads; None keeps torch's default (one per core)
THREADS = Int(1, optional=True)


#: arithmetic of features, probes and training (:mod:`diffred.core.precision`); the prologue
#: makes it the setting of every call in the chapter
PRECISION = Choice(choices=PRECISIONS)


def subset(item: str, among: str) -> Callable[[dict], str | None]:
    """A constraint: parameter ``item`` is one of the list parameter ``among``."""
    def check(p):
        return None if p[item] in p[among] else \
            f"{item} {p[item]!r} must be one of {among} {p[among]!r}"
    return check
