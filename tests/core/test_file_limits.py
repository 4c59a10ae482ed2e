"""Per-file limits, the problem cap keeping the earliest lines, and problem codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from batch_workflows.errors import Problem
from batch_workflows.profiles import CHAT, get_profile
from batch_workflows.requests import (
    RequestValidator,
    ShardManifest,
    validate_file,
    validate_requests,
    write_shards,
)
from batch_workflows.requests import lines as lines_mod

NEBIUS = get_profile("nebius")
SCRIPT = str(Path(sys.executable).parent / "batch-workflows")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def chat(i: int | str, text: str = "hello") -> dict:
    body = {"model": "m1", "messages": [{"role": "user", "content": f"{text} {i}"}]}
    return {"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body}


def write(path: Path, lines: list) -> Path:
    raw = [x if isinstance(x, bytes) else orjson.dumps(x) for x in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def where(report) -> list[tuple[int, str | None]]:
    return [(p.line, p.code) for p in report.problems]


# -- G1: the per-file limits ------------------------------------------------------------------


def test_too_many_requests_is_reported_once_at_the_first_line_over(tmp_path: Path) -> None:
    profile = NEBIUS.with_limits(max_requests_per_file=3)
    path = write(tmp_path / "in.jsonl", [chat(i) for i in range(6)])
    report = validate_file(path, profile)
    assert where(report) == [(4, "too_many_requests")]
    reason = report.problems[0].reason
    assert "3 requests per file" in reason and '"nebius"' in reason
    assert "batch-workflows shard" in reason and "--max-requests 3" in reason
    assert report.requests == 6
    # exactly at the limit is fine
    assert validate_file(write(tmp_path / "ok.jsonl", [chat(i) for i in range(3)]), profile).ok


def test_blank_lines_do_not_count_as_requests(tmp_path: Path) -> None:
    profile = NEBIUS.with_limits(max_requests_per_file=2)
    path = write(tmp_path / "in.jsonl", [chat(1), b"", chat(2), b"  ", chat(3)])
    report = validate_file(path, profile)
    assert where(report) == [(2, "blank_line"), (4, "blank_line"), (5, "too_many_requests")]


def test_file_too_large_names_the_line_where_bytes_pass_the_limit(tmp_path: Path) -> None:
    lines = [orjson.dumps(chat(i)) for i in range(5)]
    through_3 = sum(len(x) + 1 for x in lines[:3])  # each line counts with its newline
    path = write(tmp_path / "in.jsonl", lines)
    assert validate_file(path, NEBIUS.with_limits(max_bytes_per_file=through_3)).problems[0].line == 4
    report = validate_file(path, NEBIUS.with_limits(max_bytes_per_file=through_3 - 1))
    assert where(report) == [(3, "file_too_large")]
    assert f"{through_3 - 1:,} bytes per file" in report.problems[0].reason
    assert "--max-bytes" in report.problems[0].reason
    total = sum(len(x) + 1 for x in lines)
    assert validate_file(path, NEBIUS.with_limits(max_bytes_per_file=total)).ok


@pytest.mark.parametrize("chunk", [1, 5, 97, 1 << 16])
def test_every_way_in_finds_the_same_crossing_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The stream counts a read chunk at a time; the line found must not depend on chunks."""
    monkeypatch.setattr(lines_mod, "READ_CHUNK_BYTES", chunk)
    lines: list = [chat(i, "x" * (i % 7)) for i in range(40)]
    lines[5] = b""  # a blank line: not a request, but its newline is a byte
    lines[9] = b"{broken"  # a bad line still counts
    raw = [x if isinstance(x, bytes) else orjson.dumps(x) for x in lines]
    limit_bytes = sum(len(x) + 1 for x in raw[:30]) - 3  # crossed on line 30
    profile = NEBIUS.with_limits(max_requests_per_file=17, max_bytes_per_file=limit_bytes)
    path = write(tmp_path / "in.jsonl", lines)
    expected = [(6, "blank_line"), (10, "invalid_json"), (19, "too_many_requests"),
                (30, "file_too_large")]
    assert where(validate_file(path, profile)) == expected
    v = RequestValidator(profile)
    for n, line in enumerate(raw, 1):
        v.check_line(line + b"\n", n)
    assert where(v.finish()) == expected


def test_validate_requests_counts_serialised_sizes() -> None:
    reqs = [chat(i) for i in range(4)]
    size = sum(len(orjson.dumps(r)) + 1 for r in reqs[:2])
    report = validate_requests(reqs, NEBIUS.with_limits(max_bytes_per_file=size))
    assert where(report) == [(3, "file_too_large")]


def test_cli_rejects_an_openai_file_over_50000_requests_and_shard_splits_it(
    tmp_path: Path,
) -> None:
    line = orjson.dumps(chat("{}"))
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(line.replace(b"{}", str(i).encode()) + b"\n" for i in range(50_002)))
    result = cli("validate", "big.jsonl", "--provider", "openai", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "big.jsonl:50001: request number 50,001 is over the limit of 50,000 requests per file "
        'of provider "openai"; split it with '
        "`batch-workflows shard --provider openai --max-requests 50000`"
    ]
    # sharding is the cure, so the shard command does not hold the size against its input
    result = cli("shard", "big.jsonl", "--provider", "openai", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = ShardManifest.read_json(tmp_path / "out" / "manifest.json")
    assert [s.lines for s in manifest.shards] == [50_000, 2]
    assert all(validate_file(tmp_path / s.path, get_profile("openai")).ok for s in manifest.shards)
    assert validate_file(path, get_profile("openai"), file_limits=False).ok


def test_shard_writer_uses_the_profile_limits_without_tripping_on_them(tmp_path: Path) -> None:
    profile = NEBIUS.with_limits(max_requests_per_file=3, max_bytes_per_file=400)
    manifest = write_shards((chat(i) for i in range(10)), tmp_path, profile)
    assert manifest.total_requests == 10
    for shard in manifest.shards:
        assert shard.lines <= 3 and shard.bytes <= 400
        assert validate_file(shard.path, profile).ok


# -- G8: the cap keeps the earliest problems -------------------------------------------------


def test_an_early_duplicate_survives_a_full_cap(tmp_path: Path) -> None:
    lines: list = [chat(1), chat(1)] + [b"nope"] * 149 + [chat(999)]
    report = validate_file(write(tmp_path / "in.jsonl", lines), NEBIUS, max_problems=100)
    assert report.truncated and len(report.problems) == 100
    assert report.problems[0].line == 2 and report.problems[0].code == "duplicate_custom_id"
    assert [p.line for p in report.problems] == list(range(2, 102))


@pytest.mark.parametrize("reread", [True, False])
def test_earliest_duplicates_are_kept_past_the_confirmation_budget(
    tmp_path: Path, reread: bool
) -> None:
    """20,000 ids each used twice: more suspects than the 10,000 lines re-read at most."""
    lines = [chat(i % 20_000) for i in range(40_000)]
    if reread:
        report = validate_file(write(tmp_path / "in.jsonl", lines), NEBIUS, max_problems=5)
    else:
        report = validate_requests(lines, NEBIUS, max_problems=5)
    assert [p.line for p in report.problems] == [20_001, 20_002, 20_003, 20_004, 20_005]
    assert report.problems[0].reason.endswith("(first used on line 1)")
    assert report.truncated


def test_the_cap_keeps_the_smallest_lines_in_order_for_objects_too() -> None:
    reqs = [chat(i) for i in range(30)]
    for i in range(10, 30):
        reqs[i] = {**reqs[i], "method": "GET"}
    reqs[3] = chat(0)  # duplicate of line 1, settled only at the end
    report = validate_requests(reqs, NEBIUS, max_problems=5)
    assert [(p.line, p.field) for p in report.problems] == [
        (4, "custom_id"), (11, "method"), (12, "method"), (13, "method"), (14, "method")
    ]
    assert report.truncated


# -- Q2: codes ------------------------------------------------------------------------------


def test_problems_carry_codes_and_keep_their_text(tmp_path: Path) -> None:
    emb = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
           "body": {"model": "m1", "input": ""}}
    lines: list = [
        chat(1),
        b"{nope",
        b"[1]",
        {**chat(3), "custom_id": None},
        {**chat(4), "method": "GET"},
        {**chat(5), "url": 5},
        {**chat(6), "body": {"model": "m2", "messages": [{"role": "user", "content": "x"}]}},
        {**chat(7), "body": {"model": "m1", "messages": []}},
        {**chat(8), "body": {"messages": [{"role": "user", "content": "x"}]}},
        chat(1),
        b"",
        emb,
        b'{"custom_id": "\xff"}',
    ]
    report = validate_file(write(tmp_path / "in.jsonl", lines), NEBIUS)
    assert [p.code for p in report.problems] == [
        "invalid_json", "not_object", "missing_custom_id", "invalid_method", "invalid_url",
        "mismatched_model", "invalid_messages", "missing_model", "duplicate_custom_id",
        "blank_line", "mismatched_endpoint", "invalid_input", "invalid_utf8",
    ]
    assert all(p.code for p in report.problems)
    p = Problem("f.jsonl", 3, "custom_id", "missing", "missing_custom_id")
    assert str(p) == "f.jsonl:3: custom_id: missing"
    assert p == Problem("f.jsonl", 3, "custom_id", "missing")  # the code is not compared


def test_an_unknown_url_is_a_mismatch_once_the_file_has_an_endpoint() -> None:
    odd = {**chat(2), "url": "/v1/nothing"}
    assert [p.code for p in validate_requests([odd], NEBIUS).problems] == ["invalid_url"]
    report = validate_requests([chat(1), odd], NEBIUS)
    assert [p.code for p in report.problems] == ["mismatched_endpoint"]
    report = validate_requests([odd], NEBIUS, endpoint=CHAT)
    assert [p.code for p in report.problems] == ["mismatched_endpoint"]


def test_an_empty_file_has_the_empty_file_code(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert where(validate_file(path, NEBIUS)) == [(1, "empty_file")]
