import pytest

from diffred import cli
from diffred.assets import assets_table


def test_assets_table_lists_every_model_and_dataset():
    table = assets_table()
    names = set(table["name"])
    assert {"efficientnet_lite0", "minilm_l6", "mpnet_base", "resnet152_resmem", "cifar10",
            "fashion_mnist", "elpv", "conll2003_ner"} <= names
    assert set(table["available"]) <= {"yes", "no", "online only"}
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
    defaults = {"n": 10, "frac": 0.5, "quick": False, "models": ["a"], "name": "x"}
    assert cli.coerce_parameter("c", "n", "20", defaults) == 20
    assert cli.coerce_parameter("c", "frac", "1", defaults) == 1
    assert cli.coerce_parameter("c", "quick", "True", defaults) is True
    assert cli.coerce_parameter("c", "models", "a,b", defaults) == ["a", "b"]
    assert cli.coerce_parameter("c", "name", "123", defaults) == "123"
    with pytest.raises(cli.DiffredError, match="bad value 'many' for parameter 'n'"):
        cli.coerce_parameter("c", "n", "many", defaults)
