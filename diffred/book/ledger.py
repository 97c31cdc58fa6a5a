"""The rules ledger: every verdict rule the book applies, with its text, its code, the date it
was fixed and every later change — the back-matter page *Rules ledger* shows
:func:`rules_table`.

The rules are declared where their code is (:func:`diffred.core.verdicts.declared`); importing
every module of :mod:`diffred.studies` registers them all, so the ledger cannot miss a rule
that a study defines.
"""
from __future__ import annotations

import importlib
import pkgutil

import pandas as pd

import diffred.studies
from diffred.core.verdicts import RULES, Rule, ledger


def rules() -> dict[str, Rule]:
    """Every declared rule, by name, after importing every study module."""
    for info in pkgutil.walk_packages(diffred.studies.__path__, "diffred.studies."):
        importlib.import_module(info.name)
    return dict(RULES)


def rules_table() -> pd.DataFrame:
    """The ledger for the page: one row per rule (chapter order), columns chapter, rule, rule
    text, code (``function (module)``, so that a narrow page can break it), fixed (ISO date)
    and changes since ("after results": results existed when it changed)."""
    table = ledger(rules().values())
    table["code"] = [f"{f} ({m})" for m, _, f in (c.rpartition(".") for c in table.code)]
    return table.rename(columns={"text": "the rule", "changed": "changes since"})
