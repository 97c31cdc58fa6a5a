"""Command line: ``diffred assets``, ``diffred run <chapter> -p name value``, ``diffred extract``,
``diffred data fetch``.

Errors print as one line (``diffred: error: ...``) with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from diffred.book.chapter import (
    CHAPTERS_DIR,
    chapter_defaults,
    chapters,
    resolve_chapter,
    resolve_parameters,
    schema,
)
from diffred.core.assets import assets_table
from diffred.core.errors import DiffredError
from diffred.core.paths import BOOK_DIR, IN_CHECKOUT, PROJECT_DIR


def coerce_parameter(chapter: str, name: str, raw):
    """One ``-p name value`` of ``chapter``: the name checked, the value parsed and checked."""
    return schema(chapter).value(_local_name(resolve_chapter(chapter).stem, name), raw)


def _local_name(stem: str, name: str) -> str:
    """``04.resnet_resolution`` -> ``resnet_resolution`` for chapter 04 (or an error)."""
    prefix, dot, rest = name.partition(".")
    if not dot:
        return name
    if resolve_chapter(prefix).stem != stem:
        raise DiffredError(f"parameter {name!r} is qualified for chapter {prefix}, not {stem}")
    return rest


def book_parameters(params: dict) -> dict[str, dict]:
    """Split ``diffred book`` parameters by chapter: ``NN.name`` goes to chapter NN only, a plain
    name to every chapter that has it (after checking it exists somewhere)."""
    stems = list(chapters())
    out: dict[str, dict] = {stem: {} for stem in stems}
    for name, value in params.items():
        prefix, dot, local = name.partition(".")
        if dot:
            stem = resolve_chapter(prefix).stem
            out[stem][local] = schema(stem).value(local, value)
            continue
        owners = [stem for stem in stems if name in schema(stem).rules]
        if not owners:
            for stem in stems:
                schema(stem).check_name(name)          # an old name: its new one
            known = sorted({k for stem in stems for k in schema(stem).rules})
            raise DiffredError(f"unknown parameter {name!r}; valid choices: {', '.join(known)} "
                               f"(or NN.name for chapter NN)")
        for stem in owners:
            out[stem][name] = schema(stem).value(name, value)
    for stem, mine in out.items():
        resolve_parameters(stem, mine)
    return out


#: A chapter cell's time limit when neither ``--cell-timeout`` nor ``DIFFRED_CELL_TIMEOUT``
#: says otherwise: generous (the longest default cell, chapter 4's real-arm selection, takes
#: about 6 min on 2 cores), yet a hung kernel fails in hours, not never.
CELL_TIMEOUT = 7200.0


def cell_timeout(seconds: float | None = None) -> float:
    """Seconds one chapter cell may run: ``seconds``, else ``DIFFRED_CELL_TIMEOUT``, else
    :data:`CELL_TIMEOUT` (a one-line error for a value that is not a positive number)."""
    raw = seconds if seconds is not None else os.environ.get("DIFFRED_CELL_TIMEOUT", CELL_TIMEOUT)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise DiffredError(f"cell timeout {raw!r} is not a positive number of seconds "
                           f"(--cell-timeout or DIFFRED_CELL_TIMEOUT)")
    return value


def execute_notebook(source: Path, output: Path, name: str, params: dict | None = None,
                     cwd: Path | None = None, progress: bool = False,
                     timeout: float | None = None) -> Path:
    """Execute a MyST notebook with papermill, every cell under a watchdog of ``timeout``
    seconds (:func:`cell_timeout`).  A failing cell, or one that runs past the limit, raises a
    one-line :class:`DiffredError` naming ``name``, the cell and the limit.  The kernel runs in
    ``cwd``: the chapters' folder in a checkout, else the caller's folder (never inside an
    installed package)."""
    import jupytext
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    limit = cell_timeout(timeout)
    notebook = jupytext.read(source)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{Path(source).stem}.ipynb"
        jupytext.write(notebook, ipynb)
        try:
            pm.execute_notebook(str(ipynb), str(output), parameters=params or {},
                                kernel_name="python3",
                                cwd=str(cwd or (CHAPTERS_DIR if IN_CHECKOUT else Path.cwd())),
                                progress_bar=progress,
                                request_save_on_cell_execute=False, execution_timeout=limit)
        except pm.PapermillExecutionError as err:
            raise DiffredError(f"chapter {name} failed in cell {err.exec_count}: "
                               f"{err.ename}: {err.evalue} (see {output})") from None
        except CellTimeoutError as err:
            raise DiffredError(f"chapter {name}: {_timed_out_cell(notebook, str(err))} ran past "
                               f"its time limit of {limit:g} s (--cell-timeout or "
                               f"DIFFRED_CELL_TIMEOUT)") from None
    return output


def _timed_out_cell(notebook, message: str) -> str:
    """'cell N ("first line")' for the code cell nbclient's timeout message previews."""
    preview = message.split("-------------------\n")[1].strip() if \
        message.count("-------------------") >= 2 else ""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for i, cell in enumerate(code, 1):
        if preview and cell.source.strip().startswith(preview[:200]):
            first = cell.source.strip().splitlines()[0]
            return f"code cell {i} of {len(code)} ({first[:60]!r})"
    return "a cell"


def run_chapter(chapter: str, params: dict | None = None, output: Path | None = None,
                progress: bool = False, timeout: float | None = None) -> Path:
    """Execute a chapter with papermill and return the executed notebook's path.

    ``params`` override the chapter's ``parameters`` cell: every name and value (and the quick
    preset they combine with) is checked before the notebook starts.  Every cell runs under a
    watchdog of ``timeout`` seconds (:func:`cell_timeout`: ``DIFFRED_CELL_TIMEOUT``, default
    2 h).
    """
    path = resolve_chapter(chapter)
    params = {_local_name(path.stem, k): v for k, v in (params or {}).items()}
    rules = schema(path.stem)
    params = {k: rules.value(k, v) for k, v in params.items()}
    resolve_parameters(path.stem, params)        # every value (quick preset too) checked first
    cell_timeout(timeout)
    output = Path(output or Path.cwd() / f"{path.stem}.out.ipynb")
    return execute_notebook(path, output, path.stem, params, progress=progress, timeout=timeout)


def build_book(params: dict | None = None, output: Path | None = None,
               progress: bool = False, timeout: float | None = None) -> Path:
    """Execute every chapter with papermill, printing each one's wall time, then build the site
    from the executed notebooks (nothing is executed twice).  Returns the site's index.html.

    Without ``params`` this is the book (``make book``): results in ``data/results``, site in
    ``_build/html``.  With them (``diffred book -p quick True``, ``-p device cuda``) everything —
    executed notebooks, results, site — goes under ``output`` (default ``_build/papermill``), so
    the default results are never overwritten by a variant.
    """
    import shutil
    import subprocess

    import yaml
    variant = bool(params) or output is not None
    home = PROJECT_DIR if IN_CHECKOUT else Path.cwd()      # a wheel install builds here
    output = Path(output or (home / "_build" / "papermill" if params else home))
    output = output.resolve()
    if variant:
        os.environ["DIFFRED_RESULTS"] = str(output / "results")
    source = output / "_build" / "executed"
    if source.exists():
        shutil.rmtree(source)
    (source / "chapters").mkdir(parents=True)
    per_chapter = book_parameters(params or {})
    cell_timeout(timeout)
    started = time.perf_counter()
    for i, (stem, mine) in enumerate(per_chapter.items(), 1):
        print(f"[{i}/{len(per_chapter)}] {stem} ...", flush=True)
        t0 = time.perf_counter()
        run_chapter(stem, mine, source / "chapters" / f"{stem}.ipynb", progress=progress,
                    timeout=timeout)
        print(f"[{i}/{len(per_chapter)}] {stem}: {time.perf_counter() - t0:.0f} s", flush=True)
        _drop_stderr(source / "chapters" / f"{stem}.ipynb")
    config = yaml.safe_load((BOOK_DIR / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (source / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name in ("_toc.yml", "intro.md"):
        shutil.copy(BOOK_DIR / name, source / name)
    for page in CHAPTERS_DIR.iterdir():       # back matter: the ledger, the bibliography
        if page.suffix == ".md" and page.stem not in per_chapter and _is_notebook(page):
            execute_notebook(page, source / "chapters" / f"{page.stem}.ipynb", page.stem,
                             timeout=timeout)
        elif page.suffix == ".bib" or (page.suffix == ".md" and page.stem not in per_chapter):
            shutil.copy(page, source / "chapters" / page.name)
    shutil.copytree(CHAPTERS_DIR / "_shared", source / "chapters" / "_shared")  # {include}d text
    jb = Path(sys.executable).parent / "jupyter-book"
    t0 = time.perf_counter()
    # -W: a warning fails the build (--keep-going: after reporting all of them)
    built = subprocess.run([str(jb), "build", str(source), "--path-output", str(output), "-W",
                            "--keep-going"], cwd=str(home), capture_output=not progress,
                           text=True)
    if built.returncode != 0:
        log = (built.stdout or "") + (built.stderr or "")
        warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
        raise DiffredError(f"jupyter-book build failed (warnings are errors): "
                           f"{' | '.join(warnings[:5]) or log[-500:]}")
    site = output / "_build" / "html"
    downloads = site / "notebooks"         # executed notebooks and MyST sources, offline
    downloads.mkdir(exist_ok=True)
    for stem in per_chapter:
        shutil.copy(source / "chapters" / f"{stem}.ipynb", downloads / f"{stem}.ipynb")
        shutil.copy(CHAPTERS_DIR / f"{stem}.md", downloads / f"{stem}.md")
    print(f"site built in {time.perf_counter() - t0:.0f} s; book in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return site / "index.html"


def _is_notebook(page: Path) -> bool:
    """A MyST page with a kernel (front matter ``kernelspec``): executed, not copied."""
    text = page.read_text()
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


def _drop_stderr(notebook: Path) -> None:
    """Remove stderr streams (warnings, progress bars) and papermill's empty outputs from an
    executed notebook: a reader's page shows results, not noise."""
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.output_type == "stream" and o.get("name") == "stderr")]
    nbformat.write(nb, notebook)


def _cache_command(args) -> None:
    """``diffred cache verify|info|gc`` on the cache folder (``DIFFRED_CACHE``)."""
    from diffred.core import cache
    from diffred.core.paths import cache_dir
    root = cache_dir()
    if args.action == "info":
        rows = cache.cache_info(root)
        print(f"cache {root}")
        print(f"{'kind':<24}{'entries':>8}{'MB':>10}{'leftovers':>11}")
        for r in rows:
            print(f"{r['kind']:<24}{r['entries']:>8}{r['bytes'] / 1e6:>10.1f}{r['leftovers']:>11}")
        total = {k: sum(r[k] for r in rows) for k in ("entries", "bytes", "leftovers")}
        print(f"{'total':<24}{total['entries']:>8}{total['bytes'] / 1e6:>10.1f}"
              f"{total['leftovers']:>11}")
    elif args.action == "verify":
        checked = cache.verify_cache(root)
        bad = [(kind, key, why) for kind, key, why in checked if why]
        for kind, key, why in bad:
            print(f"removed {kind}/{key}: {why}")
        kinds = sorted({kind for kind, _, _ in checked})
        print(f"verified {len(checked)} entries of {len(kinds)} kinds ({', '.join(kinds)}) in "
              f"{root}: {len(checked) - len(bad)} valid, {len(bad)} damaged and removed")
    else:
        from diffred.core.extract import extract_version
        removed = cache.collect_garbage(
            root, {"features": {extract_version("vision"), extract_version("text")}})
        for path, why in removed:
            print(f"removed {path}: {why}")
        print(f"gc: removed {len(removed)} leftover or obsolete items from {root}")


def _data_command(args) -> None:
    """``diffred data fetch [NAME...|--all] [--to DIR]``: download what is missing."""
    from diffred.core.fetch import dataset_names, fetch
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
    r.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                   help=f"time limit of each cell (default $DIFFRED_CELL_TIMEOUT or {CELL_TIMEOUT:g})")
    b = sub.add_parser("book", help="run every chapter with papermill, then build the site")
    b.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="parameter for every chapter that has it")
    b.add_argument("-o", "--output", type=Path, help="folder (default _build/papermill)")
    b.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                   help=f"time limit of each cell (default $DIFFRED_CELL_TIMEOUT or {CELL_TIMEOUT:g})")
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
    c = sub.add_parser("cache", help="check every entry (verify), size per kind (info), "
                                     "remove leftovers and obsolete entries (gc)")
    c.add_argument("action", choices=("verify", "info", "gc"))
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
                print(f"{stem}: " + ", ".join(f"{k}={v!r}" for k, v in chapter_defaults(path).items()))
        elif args.command == "run":
            out = run_chapter(args.chapter, dict(args.parameter), args.output, progress=True,
                              timeout=args.cell_timeout)
            print(f"wrote {out}")
        elif args.command == "book":
            index = build_book(dict(args.parameter), args.output, progress=True,
                               timeout=args.cell_timeout)
            print(f"wrote {index}")
        elif args.command == "data":
            _data_command(args)
        elif args.command == "extract":
            from diffred.core.extract import features
            layer = int(args.layer) if args.layer.isdigit() else args.layer
            f = features(args.model, args.dataset, args.split, layer, n_per_class=args.n_per_class,
                         n=args.n, resolution=args.resolution)
            print(f"{args.model} {args.dataset}/{args.split} layer {args.layer}: X {f.X.shape}, "
                  f"cache key {f.meta['key']}")
        elif args.command == "cache":
            _cache_command(args)
    except (DiffredError, ValueError) as err:
        print(f"diffred: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
