import time

import pytest

from diffred.book import cli
from diffred.core.assets import assets_table


def test_assets_table_lists_every_model_and_dataset():
    table = assets_table()
    names = set(table["name"])
    assert {"efficientnet_lite0", "minilm_l6", "mpnet_base", "resnet152_resmem", "cifar10",
            "fashion_mnist", "elpv", "conll2003_ner"} <= names
    assert set(table["available"]) <= {"yes", "no", "online only", "by path"}
    row = table.set_index("name").loc["efficientnet_lite0"]
    assert row["available"] == "yes" and row["licence"] == "Apache-2.0"


def test_unknown_chapter_parameter_and_bad_value_give_one_line(capsys):
    assert cli.main(["run", "99"]) == 2
    assert "valid choices: 01_diffuse_redundancy" in capsys.readouterr().err
    assert cli.main(["run", "01", "-p", "no_such_parameter", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'no_such_parameter'" in err and "valid choices:" in err
    assert len(err.strip().splitlines()) == 1


def test_parameter_values_are_typed():
    assert cli.coerce_parameter("01", "n_per_class", "20") == 20
    assert cli.coerce_parameter("01", "C", "1") == 1.0
    assert cli.coerce_parameter("01", "quick", "True") is True
    assert cli.coerce_parameter("01", "models", "efficientnet_lite0,efficientnet_lite2") == [
        "efficientnet_lite0", "efficientnet_lite2"]
    assert cli.coerce_parameter("03", "confounder_dataset", "elpv") == "elpv"
    with pytest.raises(cli.DiffredError, match="bad value 'many' for parameter 'n_per_class'"):
        cli.coerce_parameter("01", "n_per_class", "many")


HANGING_CHAPTER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
# A chapter whose second cell never returns

```{code-cell} ipython3
:tags: [parameters]
n = 1
```

```{code-cell} ipython3
import time
while True:
    time.sleep(1)
```
"""


def test_a_cell_that_never_returns_fails_within_its_limit(tmp_path):
    from diffred.book.cli import execute_notebook
    from diffred.core.errors import DiffredError
    source = tmp_path / "99_hangs.md"
    source.write_text(HANGING_CHAPTER)
    t0 = time.perf_counter()
    with pytest.raises(DiffredError) as err:
        execute_notebook(source, tmp_path / "out.ipynb", "99_hangs", cwd=tmp_path, timeout=5)
    assert time.perf_counter() - t0 < 90
    message = str(err.value)
    assert "\n" not in message
    assert message == ("chapter 99_hangs: code cell 2 of 2 ('import time') ran past its time "
                       "limit of 5 s (--cell-timeout or DIFFRED_CELL_TIMEOUT)")


def test_the_cell_timeout_is_checked_before_anything_runs(monkeypatch):
    from diffred.book.cli import CELL_TIMEOUT, cell_timeout, main
    monkeypatch.delenv("DIFFRED_CELL_TIMEOUT", raising=False)
    assert cell_timeout() == CELL_TIMEOUT and cell_timeout(30) == 30
    monkeypatch.setenv("DIFFRED_CELL_TIMEOUT", "12.5")
    assert cell_timeout() == 12.5
    monkeypatch.setenv("DIFFRED_CELL_TIMEOUT", "soon")
    assert main(["run", "01", "-p", "quick", "True"]) == 2
