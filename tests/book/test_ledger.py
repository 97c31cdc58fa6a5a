"""The rules ledger lists every verdict rule the book applies, and only those."""
import ast
import importlib
from pathlib import Path

import diffred
from diffred.book.ledger import rules, rules_table
from diffred.core.paths import PROJECT_DIR

PRIMITIVES = {"side", "yes_if_above", "equivalence", "all_of"}


def _resolve(where: str):
    module, _, name = where.rpartition(".")
    while module:
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError:
            module, _, head = module.rpartition(".")
            name = f"{head}.{name}"
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_declared_rule_points_at_its_code():
    found = rules()
    assert {"ch1 gap at 20% of neurons", "ch3 top 1% recovers the full representation",
            "ch4 criticality", "ch4 checkpoint", "ch4 convergence gate"} <= set(found)
    for name, rule in found.items():
        assert _resolve(rule.where).rule == name, name
        assert rule.text and len(rule.fixed) == 10 and rule.chapter in "1234"
    table = rules_table()
    assert list(table.rule) == sorted(found, key=lambda n: found[n].chapter)


def _verdict_functions(path: Path) -> tuple[set, set, dict]:
    """(declared, reading verdicts, callers): top-level functions of a module that are
    declared rules; that call a verdict reading or are named for a verdict; and who calls
    each function."""
    tree = ast.parse(path.read_text())
    declared, reading, callers = set(), set(), {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        if any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "declared"
               for d in node.decorator_list):
            declared.add(node.name)
        calls = {n.func.id for n in ast.walk(node)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        if calls & PRIMITIVES or "verdict" in node.name.lower():
            reading.add(node.name)
        for called in calls:
            callers.setdefault(called, set()).add(node.name)
    return declared, reading, callers


def test_the_ledger_misses_no_function_that_reads_a_verdict():
    """Every study function that reads a verdict (calls a reading of
    :mod:`diffred.core.verdicts`, or is named for a verdict) is a declared rule, or a private
    helper that only declared rules call."""
    root = Path(diffred.__file__).parent / "studies"
    missing = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "report.py":        # presentation: prints verdicts, reads none
            continue
        declared, reading, callers = _verdict_functions(path)
        for name in reading - declared:
            who = callers.get(name, set())
            if not (name.startswith("_") and who and who <= declared):
                missing.append(f"{path.relative_to(root)}:{name}")
    assert not missing, f"verdict code outside the ledger: {missing}"


def test_the_ledger_page_is_in_the_book():
    toc = (PROJECT_DIR / "_toc.yml").read_text()
    assert "chapters/rules_ledger" in toc
    page = (PROJECT_DIR / "chapters" / "rules_ledger.md").read_text()
    assert "rules_table()" in page and "kernelspec" in page
