"""Command line: ``diffred assets``, ``diffred run <chapter> -p name value``, ``diffred extract``,
``diffred data fetch``.

Errors print as one line (``diffred: error: ...``) with exit status 2.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from pathlib import Path

from .assets import assets_table
from .errors import DiffredError
from .paths import PROJECT_DIR

CHAPTERS_DIR = PROJECT_DIR / "chapters"


# --------------------------------------------------------------------------- chapters
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


def chapter_parameters(path: Path) -> dict:
    """Names and default values of the chapter's ``parameters`` cell."""
    import jupytext
    nb = jupytext.read(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            params = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                        isinstance(node.targets[0], ast.Name):
                    try:
                        params[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        params[node.targets[0].id] = None
            return params
    raise DiffredError(f"{path.name} has no cell tagged 'parameters'")


def coerce_parameter(chapter: str, name: str, raw, defaults: dict):
    """Check ``name`` exists and convert ``raw`` (a string from the shell) to the default's type."""
    if name not in defaults:
        raise DiffredError(f"unknown parameter {name!r} for chapter {chapter}; valid choices: "
                           f"{', '.join(defaults)}")
    default = defaults[name]
    if not isinstance(raw, str):
        value = raw
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        if isinstance(default, (list, tuple)) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(default, str) and not isinstance(value, str):
            value = raw
    ok = (default is None or value is None
          or (isinstance(default, bool) and isinstance(value, bool))
          or (not isinstance(default, bool) and isinstance(default, (int, float))
              and isinstance(value, (int, float)) and not isinstance(value, bool))
          or (isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)))
          or (isinstance(default, str) and isinstance(value, str))
          or (isinstance(default, dict) and isinstance(value, dict)))
    if not ok:
        raise DiffredError(f"bad value {raw!r} for parameter {name!r} of chapter {chapter}: "
                           f"expected {type(default).__name__} like {default!r}")
    return value


def run_chapter(chapter: str, params: dict | None = None, output: Path | None = None,
                progress: bool = False) -> Path:
    """Execute a chapter with papermill and return the executed notebook's path.

    ``params`` override the chapter's ``parameters`` cell (names are checked first).
    """
    import jupytext
    import papermill as pm
    path = resolve_chapter(chapter)
    defaults = chapter_parameters(path)
    params = {k: coerce_parameter(path.stem, k, v, defaults) for k, v in (params or {}).items()}
    output = Path(output or Path.cwd() / f"{path.stem}.out.ipynb")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{path.stem}.ipynb"
        jupytext.write(jupytext.read(path), source)
        try:
            pm.execute_notebook(str(source), str(output), parameters=params,
                                kernel_name="python3", cwd=str(CHAPTERS_DIR),
                                progress_bar=progress, request_save_on_cell_execute=False)
        except pm.PapermillExecutionError as err:
            raise DiffredError(f"chapter {path.stem} failed in cell {err.exec_count}: "
                               f"{err.ename}: {err.evalue} (see {output})") from None
    return output


def build_book(params: dict | None = None, output: Path | None = None,
               progress: bool = False) -> Path:
    """Execute every chapter with papermill (same ``params`` for all, each chapter taking the
    ones it knows) and build the site from those executed notebooks, without re-executing.

    ``diffred book -p quick True`` gives the whole book at smoke-test scale in minutes;
    ``diffred book -p device cuda`` builds it from GPU runs.  Returns the site's index.html.
    """
    import shutil
    import subprocess
    import yaml
    output = Path(output or PROJECT_DIR / "_build" / "papermill").resolve()
    os.environ["DIFFRED_RESULTS"] = str(output / "results")   # keep data/results for `make book`
    source = output / "src"
    if source.exists():
        shutil.rmtree(source)
    (source / "chapters").mkdir(parents=True)
    for stem, path in chapters().items():
        known = chapter_parameters(path)
        mine = {k: v for k, v in (params or {}).items() if k in known}
        run_chapter(stem, mine, source / "chapters" / f"{stem}.ipynb", progress=progress)
    config = yaml.safe_load((PROJECT_DIR / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (source / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name in ("_toc.yml", "intro.md"):
        shutil.copy(PROJECT_DIR / name, source / name)
    jb = Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jb), "build", str(source), "--path-output", str(output)], check=True,
                   cwd=str(PROJECT_DIR))
    return output / "_build" / "html" / "index.html"


def _data_command(args) -> None:
    """``diffred data fetch [NAME...|--all] [--to DIR]``: download what is missing."""
    from .fetch import dataset_names, fetch
    if bool(args.names) == args.all:
        raise DiffredError("name the datasets to fetch or give --all (not both); valid choices: "
                           + ", ".join(dataset_names()))
    fetch(None if args.all else args.names, args.to, only_target=args.to is not None)


# --------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffred", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("assets", help="list models and datasets, where they come from, availability")
    r = sub.add_parser("run", help="execute a chapter with papermill")
    r.add_argument("chapter", help="e.g. 01_diffuse_redundancy, 01 or diffuse_redundancy")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="override a parameter (repeatable)")
    r.add_argument("-o", "--output", type=Path, help="executed notebook (default ./<chapter>.out.ipynb)")
    b = sub.add_parser("book", help="run every chapter with papermill, then build the site")
    b.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="parameter for every chapter that has it")
    b.add_argument("-o", "--output", type=Path, help="folder (default _build/papermill)")
    sub.add_parser("chapters", help="list chapters and their parameters")
    d = sub.add_parser("data", help="datasets: fetch the missing ones from their canonical sources")
    f = d.add_subparsers(dest="data_command", required=True).add_parser(
        "fetch", help="download missing datasets, verified against the manifest's checksums")
    f.add_argument("names", nargs="*", metavar="NAME", help="datasets (see `diffred assets`)")
    f.add_argument("--all", action="store_true", help="every dataset of the manifest")
    f.add_argument("--to", type=Path, help="folder (default $DIFFRED_DATA, else data/mirror)")
    e = sub.add_parser("extract", help="extract (and cache) features")
    e.add_argument("model")
    e.add_argument("dataset")
    e.add_argument("--split", default="train")
    e.add_argument("--layer", default="penultimate")
    e.add_argument("--n-per-class", type=int)
    e.add_argument("--n", type=int)
    e.add_argument("--resolution", type=int)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "assets":
            import pandas as pd
            with pd.option_context("display.max_colwidth", 60, "display.width", 200):
                print(assets_table().to_string(index=False))
        elif args.command == "chapters":
            for stem, path in chapters().items():
                print(f"{stem}: " + ", ".join(f"{k}={v!r}" for k, v in chapter_parameters(path).items()))
        elif args.command == "run":
            out = run_chapter(args.chapter, dict(args.parameter), args.output, progress=True)
            print(f"wrote {out}")
        elif args.command == "book":
            known = {k for path in chapters().values() for k in chapter_parameters(path)}
            for name, _ in args.parameter:
                if name not in known:
                    raise DiffredError(f"unknown parameter {name!r}; valid choices: "
                                       f"{', '.join(sorted(known))}")
            print(f"wrote {build_book(dict(args.parameter), args.output, progress=True)}")
        elif args.command == "data":
            _data_command(args)
        elif args.command == "extract":
            from .extract import features
            layer = int(args.layer) if args.layer.isdigit() else args.layer
            f = features(args.model, args.dataset, args.split, layer, n_per_class=args.n_per_class,
                         n=args.n, resolution=args.resolution)
            print(f"{args.model} {args.dataset}/{args.split} layer {args.layer}: X {f.X.shape}, "
                  f"cache key {f.meta['key']}")
    except (DiffredError, ValueError) as err:
        print(f"diffred: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
