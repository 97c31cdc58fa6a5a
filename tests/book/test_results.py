"""Results read back as they were written: dtypes kept (Parquet), provenance attached, and a
one-line error naming what exists when a chapter or table does not."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffred import results
from diffred.book.results import ResultSet, read_table


def test_tables_come_back_with_their_dtypes_and_provenance(tmp_path):
    df = pd.DataFrame({"model": ["a", "b"], "seed": np.array([0, 7], dtype=np.int64),
                       "converged": [True, False], "accuracy": [0.5, np.nan],
                       "paper": [0.95, "not stated"]})      # numbers and text in one column
    with ResultSet("01_diffuse_redundancy", root=tmp_path) as rs:
        rs.save(df, "runs", quick=True)
        rs.save_file("provenance.json", b'{"commit": "abc1234"}')
    loaded = results.load("01", root=tmp_path)
    back = loaded["runs"]
    assert list(loaded) == ["runs"] and loaded.chapter == "01_diffuse_redundancy"
    assert back.seed.dtype == np.int64 and back.converged.dtype == bool
    assert back.accuracy.dtype == np.float64 and np.isnan(back.accuracy[1])
    assert back.paper.tolist() == ["0.95", "not stated"]     # a mixed column is stored as text
    assert loaded.provenance == {"commit": "abc1234"}
    assert loaded.table_provenance["runs"]["quick"] is True
    assert loaded.table_provenance["runs"]["rows"] == 2
    # the CSV is still written, and loses what Parquet keeps
    assert pd.read_csv(tmp_path / "01_diffuse_redundancy" / "runs.csv").converged.dtype == bool
    pd.testing.assert_frame_equal(read_table("runs", "01_diffuse_redundancy", root=tmp_path), back)


def test_missing_chapter_or_table_names_what_is_there(tmp_path):
    with ResultSet("03_fewshot_soft_mask", root=tmp_path) as rs:
        rs.save(pd.DataFrame({"x": [1]}), "episodes")
    with pytest.raises(FileNotFoundError, match="there are: 03_fewshot_soft_mask"):
        results.load("02", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="valid choices: episodes"):
        read_table("nope", "03", root=tmp_path)
