"""Verdicts: declared rules that read a result through its 95% interval, and their ledger.

Every verdict the book prints comes from a function registered here with :func:`declared`:
its rule in words, the date the rule was fixed and every later change (with its date, its
reason and whether results already existed).  :func:`ledger` is that register as a table;
the book prints it on its *Rules ledger* page, and a test checks that every function of a
study that reads a verdict is in it.

The rules share three readings of an interval ``[lo, hi]``:

* :func:`side` — which side of a bound the interval lies on ("above" / "below"), or
  "inconclusive" when it straddles the bound or does not exist (one run, one pair: NaN);
* :func:`equivalence` — "equivalent" when the interval lies inside ``(-margin, margin)``,
  "different" when it lies wholly outside that band, else "inconclusive" (a "no difference"
  is never read off an interval that merely covers zero);
* :func:`all_of` — a finding of several parts: "yes" when every part says "yes", "no" when
  one says "no", else "inconclusive".
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

INCONCLUSIVE = "inconclusive"


# --------------------------------------------------------------------------- readings
def _finite(*values) -> bool:
    return all(v is not None and np.isfinite(v) for v in values)


def side(lo: float, hi: float, bound: float = 0.0) -> str:
    """"above" when ``lo > bound``, "below" when ``hi < bound``, else "inconclusive" (also when
    either end is NaN or infinite: no interval, no verdict)."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    return "above" if lo > bound else "below" if hi < bound else INCONCLUSIVE


def yes_if_above(lo: float, hi: float, bound: float = 0.0) -> str:
    """:func:`side` as an answer to "is it above ``bound``?": "yes", "no" or "inconclusive"."""
    return {"above": "yes", "below": "no"}.get(side(lo, hi, bound), INCONCLUSIVE)


def equivalence(lo: float, hi: float, margin: float) -> str:
    """Equivalence reading of a difference's interval with margin ``margin`` > 0:
    "equivalent" inside ``(-margin, margin)``, "different" wholly outside it, else
    "inconclusive" (also without an interval)."""
    if not margin > 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin!r}")
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if -margin < lo and hi < margin:
        return "equivalent"
    if lo >= margin or hi <= -margin:
        return "different"
    return INCONCLUSIVE


def all_of(verdicts: Iterable[str]) -> str:
    """Combine the parts of one finding: "yes" if every part is "yes", "no" if any is "no",
    else "inconclusive" (also for no parts)."""
    verdicts = list(verdicts)
    if "no" in verdicts:
        return "no"
    return "yes" if verdicts and all(v == "yes" for v in verdicts) else INCONCLUSIVE


# --------------------------------------------------------------------------- the ledger
@dataclass(frozen=True)
class Change:
    """One change of a rule: when, what it was before, why, and whether results existed."""
    date: str
    before: str
    reason: str
    after_results: bool
    commit: str = ""


@dataclass(frozen=True)
class Rule:
    """A declared verdict rule: name, chapter, the rule in words, the date it was first fixed,
    its later changes, and where the code is (``module.function``)."""
    name: str
    chapter: str
    text: str
    fixed: str
    where: str
    changes: tuple[Change, ...] = field(default_factory=tuple)


#: Every declared rule, by name (filled as the studies' modules are imported).
RULES: dict[str, Rule] = {}


def declared(name: str, chapter: str, text: str, fixed: str,
             changes: Iterable[Change] = ()) -> Callable:
    """Register the decorated function as the code of verdict rule ``name``.

    ``text`` states the rule (the interval, the bound, the margin, what "inconclusive"
    means); ``fixed`` is the ISO date it was first fixed; ``changes`` lists every later
    change in date order.  Registering two different functions under one name is an error.
    """
    changes = tuple(changes)

    def register(fn: Callable) -> Callable:
        where = f"{fn.__module__}.{fn.__qualname__}"
        known = RULES.get(name)
        if known is not None and known.where != where:
            raise ValueError(f"verdict rule {name!r} is declared twice: {known.where}, {where}")
        RULES[name] = Rule(name, chapter, inspect.cleandoc(text), fixed, where, changes)
        fn.rule = name
        return fn
    return register


def ledger(rules: Iterable[Rule] | None = None):
    """The rules as a table, one row per rule in chapter order (in a chapter, the order they
    were declared): chapter, rule, text, code,
    fixed, changed (the changes, each with its date and reason; "after results" where results
    already existed)."""
    import pandas as pd
    rows = []
    for r in sorted(rules if rules is not None else RULES.values(), key=lambda r: r.chapter):
        changes = "; ".join(
            f"{c.date}{' (after results)' if c.after_results else ''}: was '{c.before}' — "
            f"{c.reason}" + (f" [{c.commit}]" if c.commit else "") for c in r.changes)
        rows.append({"chapter": r.chapter, "rule": r.name, "text": r.text, "code": r.where,
                     "fixed": r.fixed, "changed": changes or "—"})
    return pd.DataFrame(rows, columns=["chapter", "rule", "text", "code", "fixed", "changed"])
