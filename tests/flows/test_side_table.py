"""The side table every flow may keep beside its requests: streamed Parquet keyed by custom_id."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.side_table import (
    SideTableWriter,
    rows_at,
    sample_rows,
    tally_results,
    tally_side_table,
)

SCHEMA = pa.schema([("custom_id", pa.string()), ("prompt", pa.string()), ("sample", pa.int32())])


def test_rows_stream_in_row_groups_and_read_back_by_position(tmp_path):
    path = tmp_path / "prompts.parquet"
    with SideTableWriter(path, SCHEMA, row_group=3) as table:
        for i in range(5):
            table.append({"custom_id": f"p{i}", "prompt": f"question {i}", "sample": 0})
        table.extend({"custom_id": ["q", "q"], "prompt": ["twice", "twice"], "sample": [0, 1]})
    assert table.rows == 7
    back = pq.read_table(path)
    assert back.schema == SCHEMA and back.column("custom_id").to_pylist()[-3:] == ["p4", "q", "q"]
    assert pq.ParquetFile(path).metadata.num_row_groups == 2  # flushed at 3, then at close
    assert rows_at(path, [0, 4, 6]).to_pylist() == back.take([0, 4, 6]).to_pylist()
    assert rows_at(path, []).schema == SCHEMA and rows_at(path, []).num_rows == 0


def test_a_side_table_needs_custom_ids_and_whole_rows(tmp_path):
    with pytest.raises(ConfigurationError, match="custom_id"):
        SideTableWriter(tmp_path / "x.parquet", pa.schema([("id", pa.string())]))
    with SideTableWriter(tmp_path / "y.parquet", SCHEMA) as table:
        with pytest.raises(ValueError, match="different lengths"):
            table.extend({"custom_id": ["a"], "prompt": ["x", "y"], "sample": [0]})
        with pytest.raises(KeyError):
            table.append({"custom_id": "a", "prompt": "x"})


def test_tallies_name_the_same_requests_whatever_their_order(tmp_path):
    with SideTableWriter(tmp_path / "side.parquet", SCHEMA) as table:
        for cid, samples in (("a", 2), ("b", 1), ("c", 3)):  # a request's rows together
            table.extend({"custom_id": [cid] * samples, "prompt": ["x"] * samples,
                          "sample": list(range(samples))})
    results = pa.table({"custom_id": ["c", "a", "b"], "status": ["succeeded"] * 3})
    pq.write_table(results, tmp_path / "results.parquet")
    side, got = tally_side_table(tmp_path / "side.parquet"), tally_results(tmp_path / "results.parquet")
    assert (side.requests, side.rows, got.requests) == (3, 6, 3) and side.same_requests(got)
    pq.write_table(results.slice(1), tmp_path / "fewer.parquet")
    assert not side.same_requests(tally_results(tmp_path / "fewer.parquet"))


def test_sample_rows_spread_evenly_and_deterministically():
    assert sample_rows(3, 8) == [0, 1, 2]
    assert sample_rows(100, 4) == [0, 25, 50, 75] == sample_rows(100, 4)
