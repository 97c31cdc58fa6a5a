"""Chapter parameters: parsed alike from the shell, checked before anything runs, quick presets
never override what the user passed, book-wide names mean one thing."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import pytest

from diffred.book import cli
from diffred.book.chapter import (
    SCHEMAS,
    SHARED,
    Chapter,
    chapter_defaults,
    chapters,
    quick_preset,
    resolve_chapter,
    resolve_parameters,
    schema,
)
from diffred.core.params import ParameterError

CHAPTERS = list(chapters())


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("raw,expected", [
    ("[cifar10]", ["cifar10"]), ("cifar10", ["cifar10"]),
    ("cifar10,sign_digits", ["cifar10", "sign_digits"]),
    ("[cifar10, sign_digits]", ["cifar10", "sign_digits"]), ('["cifar10"]', ["cifar10"])])
def test_lists_of_names_parse_the_same_in_every_spelling(raw, expected):
    assert schema("01").value("datasets", raw) == expected


@pytest.mark.parametrize("raw", ["[0.1,0.2]", "0.1,0.2", "[0.1, 0.2]", "(0.1, 0.2)"])
def test_lists_of_numbers_parse_the_same_in_every_spelling(raw):
    assert schema("01").value("fractions", raw) == [0.1, 0.2]


def test_scalars_none_and_hub_names():
    rules = schema("01")
    assert rules.value("resolution", "None") is None and rules.value("resolution", "224") == 224
    assert rules.value("quick", "true") is True and rules.value("quick", "True") is True
    assert rules.value("models", "timm:resnet50,efficientnet_lite0") == [
        "timm:resnet50", "efficientnet_lite0"]
    assert schema("02").value("delta_pairs", "[[1,1],[2,1.5]]") == [[1, 1], [2, 1.5]]


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("chapter,params,bad", [
    ("01", {"fractions": "[1.5,0.2]", "quick": "True"}, "1.5"),
    ("01", {"fractions": "1.5"}, "1.5"),
    ("01", {"fractions": "0"}, "(0, 1]"),
    ("02", {"tasks": "nosuchtask"}, "nosuchtask"),
    ("04", {"resnet_resolution": "-3"}, "-3"),
    ("01", {"resolution": "0"}, "resolution"),
    ("03", {"shots": "[0, 1]"}, "shots"),
    ("01", {"seeds": "[]"}, "seeds"),
    ("01", {"seeds": "-1"}, "seeds"),
    ("04", {"checkpoint_seeds": "3"}, "checkpoint_seeds [3] must be among seeds"),
    # old names: one line naming the new one
    ("01", {"n_seeds": "5"}, "'n_seeds' of chapter 01_diffuse_redundancy is now called 'seeds'"),
    ("01", {"train_per_class": "5"}, "now called 'n_per_class'"),
    ("02", {"random_seeds": "1"}, "now called 'n_random_subsets'"),
    ("03", {"backbones": "efficientnet_lite0"}, "now called 'models'"),
    ("04", {"target_test_per_class": "5"}, "now called 'target_n_test_per_class'"),
    ("04", {"seeds": "[0]"}, "at least 2"),
    ("01", {"models": "resnet50"}, "valid choices: efficientnet_lite0"),
    ("01", {"datasets": "cifar100"}, "valid choices: cifar10"),
    ("03", {"datasets": "[sign_digits]"}, "confounder_dataset 'cifar10' must be one of datasets"),
    ("04", {"blocks": "[32, 5]"}, "must divide resnet_resolution"),
    ("04", {"save_epochs": "[0, 1]"}, "must include pretrain_epochs"),
    ("01", {"no_such_parameter": "1"}, "valid choices: quick"),
])
def test_bad_parameters_stop_with_one_line_naming_value_and_choices(chapter, params, bad):
    with pytest.raises(ParameterError) as err:     # what `diffred run` does before starting
        rules = schema(chapter)
        resolve_parameters(chapter, {k: rules.value(k, v) for k, v in params.items()})
    message = str(err.value)
    assert bad in message and "\n" not in message


@pytest.mark.parametrize("args,needle", [
    (["run", "02", "-p", "tasks", "nosuchtask"], "valid choices: ud_pos"),
    (["run", "04", "-p", "resnet_resolution", "-3"], "expected an integer >= 4"),
    (["run", "01", "-p", "fractions", "[1.5,0.2]", "-p", "quick", "True"], "(0, 1]"),
    (["book", "-p", "resolution", "-1"], "resolution"),
    (["book", "-p", "nosuch", "1"], "unknown parameter 'nosuch'"),
])
def test_cli_rejects_bad_parameters_fast_before_any_model_loads(args, needle):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "diffred.book.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert time.perf_counter() - started < 10
    assert done.returncode == 2 and needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_in_kernel_check_catches_what_papermill_passed():
    """A chapter run by papermill or Jupyter directly still checks before computing."""
    path = resolve_chapter("02")
    namespace = {**chapter_defaults(path), "tasks": ["nosuchtask"]}
    with pytest.raises(ParameterError, match="nosuchtask"):
        Chapter("02", namespace, quick_preset(path))


@pytest.mark.parametrize("chapter", ["03", "04"])
def test_threads_parameter_sets_torch_threads(chapter):
    """A chapter's ``threads`` parameter is applied by the prologue (None keeps torch's)."""
    import torch
    before = torch.get_num_threads()
    path = resolve_chapter(chapter)
    try:
        Chapter(chapter, {**chapter_defaults(path), "threads": 1}, {})
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        if chapter_defaults(path)["threads"] is None:
            Chapter(chapter, chapter_defaults(path), {})
            assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- quick presets
def test_explicit_parameters_win_over_the_quick_preset():
    path = resolve_chapter("01")
    namespace = {**chapter_defaults(path), "quick": True, "fractions": [0.5, 1.0]}
    ch = Chapter("01", namespace, quick_preset(path))
    assert namespace["fractions"] == [0.5, 1.0] == ch.params["fractions"]       # explicit
    assert namespace["seeds"] == quick_preset(path)["seeds"]                     # preset
    assert ch.changed["fractions"] == [0.5, 1.0] and "C" not in ch.changed
    resolved = resolve_parameters("01", {"quick": True, "fractions": [0.5, 1.0]})
    assert resolved["fractions"] == [0.5, 1.0] and resolved["seeds"] == [0, 1]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_opens_the_same_way(chapter):
    """parameters cell -> one cell tagged quick -> the prologue; rules cover every parameter."""
    nb = jupytext.read(chapters()[chapter])
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "quick" in code[1].metadata.get("tags", [])
    assert f'diffred.Chapter("{chapter}", globals(), quick_preset)' in code[2].source
    assert set(chapter_defaults(chapters()[chapter])) == set(SCHEMAS[chapter].rules)
    assert set(quick_preset(chapters()[chapter])) <= set(SCHEMAS[chapter].rules)
    resolve_parameters(chapter, {})                 # defaults are valid
    resolve_parameters(chapter, {"quick": True})    # and so is the quick preset


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_parameters_cells_parse_cleanly_in_papermill(chapter, caplog):
    from papermill.translators import PythonTranslator
    cell = jupytext.read(chapters()[chapter]).cells
    cell = next(c for c in cell if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level(logging.WARNING, logger="papermill"):
        names = [p.name for p in PythonTranslator.inspect(cell)]
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert names == list(chapter_defaults(chapters()[chapter]))


# --------------------------------------------------------------------------- the book
def test_names_shared_by_chapters_mean_one_thing():
    owners: dict[str, list] = {}
    for stem, rules in SCHEMAS.items():
        for name in rules.rules:
            owners.setdefault(name, []).append(stem)
    clashes = sorted(n for n, o in owners.items() if len(o) > 1 and n not in SHARED)
    assert not clashes, f"parameters in several chapters but not declared shared: {clashes}"
    for name in SHARED:
        kinds = {type(SCHEMAS[s].rules[name]).__name__ for s in owners.get(name, [])}
        assert len(kinds) <= 1, (name, kinds)


def test_book_parameters_plain_shared_and_chapter_qualified():
    split = cli.book_parameters({"quick": "True", "04.resnet_width": "8", "fractions": "0.1,1.0"})
    assert all(p["quick"] is True for p in split.values())
    assert split["04_transfer_basin"]["resnet_width"] == 8
    assert "resnet_width" not in split["01_diffuse_redundancy"]
    assert split["01_diffuse_redundancy"]["fractions"] == [0.1, 1.0]
    assert split["03_fewshot_soft_mask"]["fractions"] == [0.1, 1.0]
    with pytest.raises(ParameterError, match="resnet_width"):
        cli.book_parameters({"04.resnet_width": "0"})
    with pytest.raises(Exception, match="valid choices"):
        cli.book_parameters({"99.x": "1"})


def test_run_accepts_its_own_qualified_names_only():
    assert cli.coerce_parameter("04", "04.resnet_width", "8") == 8
    with pytest.raises(Exception, match="qualified for chapter 01"):
        cli.coerce_parameter("04", "01.fractions", "0.5")


def test_chapters_listing(capsys):
    assert cli.main(["chapters"]) == 0
    out = capsys.readouterr().out
    assert all(stem in out for stem in CHAPTERS)
    assert Path(resolve_chapter("1")).name == "01_diffuse_redundancy.md"


def test_an_old_name_injected_into_a_running_chapter_is_refused():
    """papermill injects ``-p`` values into the notebook's globals: an old name there stops the
    prologue with the new name, instead of being silently ignored."""
    path = resolve_chapter("03")
    with pytest.raises(ParameterError, match="'backbones' .* now called 'models'"):
        Chapter("03", {**chapter_defaults(path), "backbones": ["efficientnet_lite0"]})
