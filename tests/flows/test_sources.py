"""The shared source reading every flow uses: listing a folder or S3 prefix, the rows of JSONL,
CSV and Parquet files with their 1-based lines, and S3 URIs."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_workflows.errors import ConfigurationError, InvalidInputError, ProblemLog
from batch_workflows.flows.sources import (
    ROW_SUFFIXES,
    join_uri,
    list_source_files,
    read_rows,
)
from batch_workflows.s3 import is_s3, split_s3, split_s3_prefix


def _rows(path, required=("prompt",), optional=("system",)):
    problems = ProblemLog(str(path))
    rows = [(r.line, r.values) for r in read_rows(str(path), problems, required, optional)]
    return rows, problems


def test_rows_of_each_format_carry_their_line_and_the_columns_asked_for(tmp_path):
    (tmp_path / "p.jsonl").write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps({"prompt": "a", "system": "s", "other": 1}) + b"\n\n"
        + orjson.dumps({"prompt": "b"}) + b"\n"
    )
    (tmp_path / "p.csv").write_text('prompt,system\n"multi\nline",s\nb,\n')
    pq.write_table(pa.table({"prompt": ["a", "b"], "x": [1, 2]}), tmp_path / "p.parquet")
    rows, problems = _rows(tmp_path / "p.jsonl")
    assert rows == [(1, {"prompt": "a", "system": "s"}), (3, {"prompt": "b", "system": None})]
    rows, _ = _rows(tmp_path / "p.csv")
    assert rows == [(3, {"prompt": "multi\nline", "system": "s"}), (4, {"prompt": "b", "system": ""})]
    rows, _ = _rows(tmp_path / "p.parquet")  # an optional column the file lacks reads as None
    assert rows == [(1, {"prompt": "a", "system": None}), (2, {"prompt": "b", "system": None})]
    assert not problems.problems


def test_unreadable_lines_and_missing_columns_go_into_one_problem_log(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\nnot json\n[1, 2]\n{"prompt": "ok2"}\n')
    rows, problems = _rows(tmp_path / "bad.jsonl")
    assert [line for line, _ in rows] == [1, 4]  # the good rows still stream
    assert [(p.line, p.field) for p in problems.problems] == [(2, None), (3, None)]
    problems.add(4, "prompt", "too long")  # the caller's own checks join the same log
    with pytest.raises(InvalidInputError) as err:
        problems.raise_if_any()
    assert str(err.value.problems[-1]) == f"{tmp_path / 'bad.jsonl'}:4: prompt: too long"
    (tmp_path / "bad.csv").write_text("text\nx\n")
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "bad.parquet")
    for name in ("bad.csv", "bad.parquet"):
        rows, problems = _rows(tmp_path / name)
        assert rows == [] and [(p.line, p.field) for p in problems.problems] == [(1, "prompt")]
    with pytest.raises(ConfigurationError, match="unsupported"):
        _rows(tmp_path / "x.docx")


def test_the_problem_log_stops_at_its_cap_and_says_so():
    log = ProblemLog("f.jsonl", max_problems=2)
    for line in range(1, 6):
        log.add(line, None, "bad")
    assert len(log.problems) == 2 and log.truncated
    with pytest.raises(InvalidInputError, match="stopped counting"):
        log.raise_if_any()
    ProblemLog("empty").raise_if_any()  # nothing wrong: nothing raised


def test_listing_keeps_the_flow_s_formats_and_leaves_hidden_files_out(tmp_path):
    for name in ("b.csv", "a/x.jsonl", "a/.partial.jsonl", ".hidden/y.jsonl", "notes.md", "c.PARQUET"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files = list_source_files(str(tmp_path), suffixes=ROW_SUFFIXES)
    assert [f.name for f in files] == ["a/x.jsonl", "b.csv", "c.PARQUET"]
    assert files[0].uri == join_uri(str(tmp_path), "a/x.jsonl") and files[0].size == 1
    before = files[1].version
    (tmp_path / "b.csv").write_text("changed")
    assert list_source_files(str(tmp_path), suffixes=ROW_SUFFIXES)[1].version != before


def test_s3_uris_parse_in_one_place():
    assert is_s3("s3://b/k") and not is_s3("/tmp/s3://b")
    assert split_s3("s3://bucket/a/b.jsonl") == ("bucket", "a/b.jsonl")
    assert split_s3("s3://bucket") == ("bucket", "")
    assert split_s3_prefix("s3://bucket/inbox") == ("bucket", "inbox/")
    assert split_s3_prefix("s3://bucket/inbox/") == ("bucket", "inbox/")
    assert split_s3_prefix("s3://bucket") == ("bucket", "")
    assert join_uri("s3://bucket/inbox/", "a.jsonl") == "s3://bucket/inbox/a.jsonl"
    for bad in ("s3:///key", "https://bucket/key"):
        with pytest.raises(ConfigurationError):
            split_s3(bad)
