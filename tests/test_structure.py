"""The package's shape: three layers with one direction of dependency (core <- studies <- book,
studies apart from each other), no import cycle between modules, no oversized module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffred"
MAX_LINES = 650


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return out


def _resolve(target: str, modules) -> str:
    """The innermost package module a dotted name refers to (``diffred.x.y`` -> ``diffred.x``
    when y is a name defined in x)."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> package modules it imports: top-level and inside functions, ``from .x import``,
    ``from . import x``, ``import diffred.x`` and ``__import__('diffred...')``."""
    root = min(modules, key=len)                  # the package itself
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base == root or base.startswith(root + "."):
                    for alias in node.names:   # `from pkg import submodule` imports it
                        sub = f"{base}.{alias.name}"
                        targets.add(sub if sub in modules else _resolve(base, modules))
            elif isinstance(node, ast.Import):
                targets |= {_resolve(a.name, modules) for a in node.names
                            if a.name == root or a.name.startswith(root + ".")}
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "__import__" and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and str(node.args[0].value).split(".")[0] == root):
                targets.add(_resolve(node.args[0].value, modules))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_sees_every_kind_of_import():
    """The walker finds top-level and function-level relative imports, ``from . import x``,
    absolute imports and ``__import__`` (a graph that saw nothing could not fail)."""
    graph = import_graph(package_modules())
    assert "diffred.core.datasets" in graph["diffred"]                 # from x import ...
    assert "diffred.core.images" in graph["diffred.core.extract"]      # top level
    assert "diffred.core.probe" in graph["diffred.studies.diffuse.method"]   # in a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("source, edge", [
    ("def f():\n    from .extract import features\n", "diffred.extract"),
    ("from . import images\n", "diffred.images"),
    ("import diffred.models\n", "diffred.models"),
    ("from diffred.cache import hash_key\n", "diffred.cache"),
    ("x = __import__('diffred').features\n", "diffred"),
])
def test_import_graph_kinds(tmp_path, source, edge):
    pkg = tmp_path / "diffred"
    pkg.mkdir()
    for name in ("__init__", "extract", "images", "models", "cache"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "probe.py").write_text(source)
    graph = import_graph(package_modules(pkg))
    assert graph["diffred.probe"] == {edge}
    (pkg / "extract.py").write_text("from .probe import x\n")   # probe -> extract -> probe
    if edge == "diffred.extract":
        assert find_cycle(import_graph(package_modules(pkg))) is not None


def test_no_import_cycle():
    cycle = find_cycle(import_graph(package_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def layer(module: str) -> str:
    """'root' (the package facade and its version), 'core', 'book', or 'studies.<name>'."""
    parts = module.split(".")
    if len(parts) < 3 or parts[1] not in ("core", "studies", "book"):
        return "root"
    return ".".join(parts[1:3]) if parts[1] == "studies" else parts[1]


#: Which layers a layer may import: one direction, core <- studies <- book; a study sees
#: only the core and itself; the root (``diffred/__init__``, ``_version``) re-exports.
ALLOWED = {"core": {"core"}, "book": {"core", "book", "studies.*"}}


def allowed(src: str, dst: str) -> bool:
    a, b = layer(src), layer(dst)
    if a == "root" or b == "root" and dst != "diffred":
        return True
    if a.startswith("studies."):
        return b in ("core", a)
    return b in ALLOWED[a] or (b.startswith("studies.") and "studies.*" in ALLOWED[a])


def test_layers_depend_one_way():
    """Core never imports a study or the book; a study never imports another study or the
    book; the book may import both.  (The rule is checked on a made-up violation too.)"""
    graph = import_graph(package_modules())
    assert {layer(m) for m in graph} >= {"core", "book", "studies.diffuse", "studies.neurons",
                                         "studies.fewshot", "studies.transfer"}
    bad = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if not allowed(a, b))
    assert not bad, "imports against the layer rule: " + ", ".join(bad)
    assert not allowed("diffred.core.cache", "diffred.book.results")
    assert not allowed("diffred.core.cache", "diffred.studies.diffuse.method")
    assert not allowed("diffred.studies.diffuse.method", "diffred.studies.neurons.method")
    assert not allowed("diffred.studies.diffuse.report", "diffred.book.chapter")
    assert allowed("diffred.book.chapter", "diffred.studies.neurons.method")
    assert allowed("diffred.studies.transfer.paper", "diffred.studies.transfer.basin")


def test_no_module_over_the_line_limit():
    sizes = {name: len(p.read_text().splitlines()) for name, p in package_modules().items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


# --------------------------------------------------------------------------- pages
CHAPTERS = sorted((PACKAGE.parent / "chapters").glob("[0-9][0-9]_*.md"))
MAX_CELL_LINES = 10


def code_cells(page: str) -> list[tuple[list[str], str]]:
    """(tags, code) of every ``{code-cell}`` of a MyST page; the cell's front matter (``:tags:``
    lines or a ``---`` block) is not code."""
    cells = []
    for block in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", page, re.S | re.M):
        lines = block.splitlines()
        if lines and lines[0].strip() == "---":
            end = lines.index("---", 1)
            front, lines = lines[1:end], lines[end + 1:]
        else:
            front = [ln for ln in lines if ln.startswith(":")]
            lines = lines[len(front):]
        tags = [t.strip(" '\"") for ln in front if "tags" in ln
                for t in ln.split("[", 1)[-1].rstrip("]").split(",")]
        cells.append((tags, "\n".join(lines)))
    return cells


def page_problems(page: str) -> list[str]:
    """What breaks the page rules: a function or class defined on the page, or a code cell
    (any but the ``parameters`` cell, hidden ones included) over :data:`MAX_CELL_LINES`."""
    problems = []
    for i, (tags, code) in enumerate(code_cells(page), 1):
        tree = ast.parse(code)
        defined = [n.name for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        if defined:
            problems.append(f"cell {i} defines {', '.join(defined)}")
        n = sum(1 for ln in code.splitlines() if ln.strip())
        if "parameters" not in tags and n > MAX_CELL_LINES:
            problems.append(f"cell {i} has {n} lines (> {MAX_CELL_LINES})")
    return problems


def test_page_rules_catch_a_definition_and_a_long_cell():
    long = "\n".join(f"x{i} = {i}" for i in range(MAX_CELL_LINES + 1))
    page = (f"```{{code-cell}} ipython3\n:tags: [parameters]\n\n{long}\n```\n\n"
            f"```{{code-cell}} ipython3\ndef f():\n    return 1\n```\n\n"
            f"```{{code-cell}} ipython3\n---\ntags: [remove-cell]\n---\n{long}\n```\n")
    assert page_problems(page) == ["cell 2 defines f",
                                   f"cell 3 has {MAX_CELL_LINES + 1} lines (> {MAX_CELL_LINES})"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_pages_are_prose_plus_verbs(chapter):
    """A page defines no function and has no code cell over ten lines (the parameters cell
    aside): computing prose, shaping tables and pipelines are verbs of the study."""
    assert CHAPTERS
    problems = page_problems(chapter.read_text(encoding="utf-8"))
    assert not problems, f"{chapter.name}: " + "; ".join(problems)


def test_tests_are_laid_out_like_the_package():
    """tests/core, tests/studies, tests/book test the layers of the same names; only this file,
    which checks the whole package, sits at the top."""
    tests = Path(__file__).resolve().parent
    placed = {p.relative_to(tests).parts[0] if len(p.relative_to(tests).parts) > 1 else p.name
              for p in tests.rglob("test_*.py")}
    assert placed == {"core", "studies", "book", Path(__file__).name}, placed
