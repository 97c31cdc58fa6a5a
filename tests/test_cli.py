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
    assert cli.coerce_parameter("01", "train_per_class", "20") == 20
    assert cli.coerce_parameter("01", "C", "1") == 1.0
    assert cli.coerce_parameter("01", "quick", "True") is True
    assert cli.coerce_parameter("01", "vision_models", "efficientnet_lite0,efficientnet_lite2") == [
        "efficientnet_lite0", "efficientnet_lite2"]
    assert cli.coerce_parameter("03", "confounder_dataset", "elpv") == "elpv"
    with pytest.raises(cli.DiffredError, match="bad value 'many' for parameter 'train_per_class'"):
        cli.coerce_parameter("01", "train_per_class", "many")
