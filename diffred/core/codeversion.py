"""What code a cached result depends on: :func:`code_version` hashes the source of the
functions that compute it and, transitively, of every diffred function and class they call
(:func:`dependencies`), so a result's key follows its code — editing a chart or a table
formatter recomputes nothing, editing a solver recomputes everything it feeds.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import sys
import textwrap
from typing import Any


@functools.cache
def _source_digest(obj) -> str:
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise ValueError(f"cannot read the source of {obj!r} for its code version: {err}") from None
    tree = ast.parse(textwrap.dedent(source))
    # charts draw results and never change them: a module's ``*_chart`` functions are not part
    # of its code version (restyling a figure must not recompute what it shows)
    tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef)
                                              and n.name.endswith("_chart"))]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def code_version(*objects) -> str:
    """Hash (hex, 16 chars) of the code that computes a result: the source of ``objects``
    (functions, classes or modules) and, transitively, of every diffred function and class
    they reference (:func:`dependencies`), plus the values of the module constants they read.

    Each source enters as its AST with docstrings removed (comments, docstrings and formatting
    do not change it); a module passed whole leaves out its ``*_chart`` functions.  So editing
    a chart or a table formatter that the computation never calls changes nothing, and editing
    a solver it calls changes the key of everything it feeds."""
    h = hashlib.sha256()
    objs, constants = dependencies(*objects)
    for obj in objs:                     # sorted by name; the names themselves are not code
        h.update(_source_digest(obj).encode())
    for name, value in constants:
        h.update(f"{name}={value}".encode())
    return h.hexdigest()[:16]


_ROOT = __name__.split(".")[0]                          # "diffred"


def _ours(value) -> bool:
    """A function or class defined in this package (what a code version follows)."""
    value = inspect.unwrap(value) if callable(value) else value
    return (inspect.isfunction(value) or inspect.isclass(value)) and \
        str(getattr(value, "__module__", "")).split(".")[0] == _ROOT


def _held(value, depth: int = 3) -> list:
    """Our functions and classes in ``value``: itself, or held by a container or by an instance
    of one of our classes (e.g. a registry ``{name: Spec(create=function)}``), ``depth`` deep."""
    if _ours(value):
        value = inspect.unwrap(value)
        return [value] if "<" not in value.__qualname__ else _enclosing(value, depth)
    if depth == 0:
        return []
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (tuple, list, frozenset, set)):
        items = list(value)
    elif _ours(type(value)) and hasattr(value, "__dict__"):
        items = [type(value), *vars(value).values()]
    else:
        return []
    return [f for item in items for f in _held(item, depth - 1)]


def _enclosing(fn, depth: int) -> list:
    """A lambda or nested function stands for the module-level function that defines it
    (``_spec.<locals>.<lambda>`` -> ``_spec``); a lambda written at module level, for the
    functions and classes its code names."""
    module = sys.modules.get(fn.__module__)
    outer = fn.__qualname__.split(".<locals>")[0]
    if module is not None and "<" not in outer and hasattr(module, outer):
        return _held(getattr(module, outer), depth)
    names = getattr(getattr(fn, "__code__", None), "co_names", ())
    return [f for name in names if module is not None and hasattr(module, name)
            for f in (_held(getattr(module, name), depth - 1) if depth else [])]


@functools.cache
def _imported(module_name: str) -> dict[str, tuple[str, str]]:
    """Names ``module_name`` imports at module level from this package
    (``from diffred.x import NAME as alias``): alias -> (``diffred.x``, ``NAME``), so a constant
    read through an import is hashed with its value where it is written."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    except (KeyError, TypeError, OSError, SyntaxError):
        return {}
    return {alias.asname or alias.name: (node.module, alias.name) for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            and node.module.split(".")[0] == _ROOT for alias in node.names}


@functools.cache
def _literals(module_name: str) -> dict[str, str]:
    """Module-level names assigned a literal in ``module_name``'s source (``TOL = 3e-5``,
    ``FRACTIONS = (0.1, 0.5)``): name -> the literal as written.  Values computed at import
    or changed at run time (a setting, a memo) are not code and are left out."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    except (KeyError, TypeError, OSError, SyntaxError):
        return {}
    out = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
                out[target.id] = ast.dump(node.value)
    return out


def _references(obj) -> tuple[list, list]:
    """(diffred functions / classes, (name, constant)) that ``obj``'s source refers to: global
    names and ``module.attr`` chains, names imported inside it, and functions held in the
    containers it reads (e.g. a ``{name: function}`` registry)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (TypeError, OSError, SyntaxError):
        return [], []
    module = sys.modules.get(obj.__module__)
    scope = dict(vars(module)) if module else {}
    origin = dict(_imported(obj.__module__))             # name -> (module, name) it came from
    for node in ast.walk(tree):                          # imports inside the body
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                origin[alias.asname or alias.name] = (node.module, alias.name)
                try:
                    target = importlib.import_module(node.module)
                    scope[alias.asname or alias.name] = getattr(target, alias.name, None) or \
                        importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    pass
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    try:
                        scope[alias.asname] = importlib.import_module(alias.name)
                    except ImportError:
                        pass
    found, constants = [], []

    def take(module_name, name, value):
        found.extend(_held(value))
        literal = _literals(module_name).get(name)
        if literal is None and name in origin and module_name == obj.__module__:
            module_name, name = origin[name]             # a constant imported from elsewhere
            literal = _literals(module_name).get(name)
        if literal is not None:
            constants.append((f"{module_name}.{name}", literal))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = scope.get(node.value.id)
            if inspect.ismodule(base) and base.__name__.split(".")[0] == _ROOT:
                take(base.__name__, node.attr, getattr(base, node.attr, None))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in scope:
            value = scope[node.id]
            if not inspect.ismodule(value):
                home = getattr(value, "__module__", None) if _ours(value) else obj.__module__
                take(home or obj.__module__, node.id, value)
    return found, constants


#: modules that store, locate, key, schedule or report results but never compute one: their
#: code is not followed (editing the cache's temporary-folder naming, say, recomputes nothing)
NOT_COMPUTATION = frozenset({"diffred.core.cache", "diffred.core.paths", "diffred.core.engine",
                             "diffred.core.errors", "diffred.core.plugins", __name__})


@functools.cache
def dependencies(*objects) -> tuple[tuple, tuple]:
    """``objects`` and every diffred function / class they reach through :func:`_references`
    (sorted by name), and the module constants those read: what :func:`code_version` hashes.
    Code of :data:`NOT_COMPUTATION` modules is not followed."""
    seen: dict[str, Any] = {}
    constants: dict[str, str] = {}
    stack = [inspect.unwrap(o) if callable(o) and not inspect.isclass(o) else o for o in objects]
    while stack:
        obj = stack.pop()
        name = obj.__name__ if inspect.ismodule(obj) else producer_name(obj)
        if name in seen:
            continue
        seen[name] = obj
        if inspect.ismodule(obj):
            continue                                     # a module passed whole: its source
        found, consts = _references(obj)
        constants.update((n, v) for n, v in consts if n.rpartition(".")[0] not in NOT_COMPUTATION)
        stack.extend(f for f in found if f is not obj and f.__module__ not in NOT_COMPUTATION)
    return tuple(seen[k] for k in sorted(seen)), tuple(sorted(constants.items()))


def producer_name(obj) -> str:
    """Import path of a module (``pkg.mod``) or module-level function / class (``pkg.mod:Name``)."""
    if inspect.ismodule(obj):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(f"code object {obj!r} is not a module, module-level function or class")
    return f"{module}:{qualname}"


def _resolve(name: str):
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj
