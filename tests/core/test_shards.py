"""Shard writer: exact limits, deterministic boundaries, validation as it writes, manifests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.profiles import CHAT, EMBEDDINGS, get_profile
from batch_workflows.requests import (
    Shard,
    ShardManifest,
    iter_requests,
    requests_from_dataframe,
    write_shards,
)
from batch_workflows.requests import duplicates as duplicates_mod
from batch_workflows.requests import lines as lines_mod
from batch_workflows.wire import BatchRequest

OPENAI = get_profile("openai")
NEBIUS = get_profile("nebius")


def chat(i: int, text: str | None = None) -> dict:
    return {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": CHAT,
        "body": {
            "model": "m1",
            "messages": [{"role": "user", "content": text if text is not None else "x" * (i % 7)}],
        },
    }


def files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_request_limit_is_respected_exactly(tmp_path: Path) -> None:
    manifest = write_shards((chat(i) for i in range(10)), tmp_path, OPENAI, max_requests_per_file=3)
    assert [s.lines for s in manifest.shards] == [3, 3, 3, 1]
    assert files(tmp_path) == [f"shard-0000{i}.jsonl" for i in range(4)]
    assert manifest.total_requests == 10
    assert (manifest.endpoint, manifest.model) == (CHAT, "m1")
    back = [r for s in manifest.shards for r in iter_requests(s.path)]
    assert back == [chat(i) for i in range(10)]


def test_byte_limit_is_respected_exactly_and_greedily(tmp_path: Path) -> None:
    requests = [chat(i) for i in range(40)]
    sizes = [len(orjson.dumps(r)) + 1 for r in requests]
    limit = sizes[0] + sizes[1] + sizes[2]  # the first shard is exactly full
    manifest = write_shards(requests, tmp_path, OPENAI, max_bytes_per_file=limit)
    start = 0
    for shard in manifest.shards:
        data = Path(shard.path).read_bytes()
        assert shard.bytes == len(data) <= limit
        assert shard.lines == data.count(b"\n")
        end = start + shard.lines
        assert sum(sizes[start:end]) == shard.bytes
        if end < len(sizes):  # cut only when the next line would not have fitted
            assert shard.bytes + sizes[end] > limit
        start = end
    assert start == 40
    assert manifest.shards[0].bytes == limit
    assert manifest.total_bytes == sum(sizes)


def test_both_limits_together(tmp_path: Path) -> None:
    requests = [chat(i, "y" * (200 if i % 5 == 0 else 1)) for i in range(30)]
    manifest = write_shards(
        requests, tmp_path, OPENAI, max_requests_per_file=4, max_bytes_per_file=600
    )
    assert all(s.lines <= 4 and s.bytes <= 600 for s in manifest.shards)
    assert manifest.total_requests == 30


def test_boundaries_and_hashes_are_deterministic(tmp_path: Path) -> None:
    def run(out: Path) -> ShardManifest:
        return write_shards(
            (chat(i) for i in range(100)), out, OPENAI, max_requests_per_file=17, prefix="p"
        )

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert [(s.lines, s.bytes, s.sha256) for s in a.shards] == [
        (s.lines, s.bytes, s.sha256) for s in b.shards
    ]
    assert a.content_hash == b.content_hash
    changed = write_shards(
        (chat(i, "other" if i == 50 else None) for i in range(100)),
        tmp_path / "c",
        OPENAI,
        max_requests_per_file=17,
    )
    assert changed.content_hash != a.content_hash


def test_manifest_hashes_sizes_and_json_round_trip(tmp_path: Path) -> None:
    manifest = write_shards((chat(i) for i in range(25)), tmp_path / "s", OPENAI, None, "x", 10)
    for shard in manifest.shards:
        data = Path(shard.path).read_bytes()
        assert shard.sha256 == hashlib.sha256(data).hexdigest()
        assert shard.bytes == len(data)
        assert Path(shard.path).name.startswith("x-")
    path = tmp_path / "manifest.json"
    manifest.write_json(path)
    again = ShardManifest.read_json(path)
    assert again == manifest
    assert again.content_hash == manifest.content_hash
    data = orjson.loads(path.read_bytes())
    assert data["total_requests"] == 25 and data["content_hash"] == manifest.content_hash
    assert isinstance(again.shards[0], Shard)


def test_a_bad_request_mid_stream_leaves_no_shard_behind(tmp_path: Path) -> None:
    requests = [chat(i) for i in range(1, 11)]
    requests[6]["method"] = "GET"  # request 7, after two full shards of 3
    with pytest.raises(InvalidInputError) as err:
        write_shards(requests, tmp_path, OPENAI, max_requests_per_file=3)
    assert [(p.line, p.field) for p in err.value.problems] == [(7, "method")]
    assert files(tmp_path) == []


def test_duplicate_custom_id_fails_with_the_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates_mod, "DUPLICATE_BUFFER", 8)  # several spilled runs
    requests = [chat(i) for i in range(1, 101)]
    requests[89] = chat(12)  # request 90 reuses r12
    with pytest.raises(InvalidInputError) as err:
        write_shards(requests, tmp_path, OPENAI, max_requests_per_file=30)
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (90, "custom_id")
    assert problem.reason == 'duplicate custom_id "r12" (first used on line 12)'
    assert files(tmp_path) == []


def test_a_line_bigger_than_a_whole_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="allowed per file") as err:
        write_shards(
            [chat(1), chat(2, "z" * 500), chat(3)], tmp_path, OPENAI, max_bytes_per_file=300
        )
    assert [p.line for p in err.value.problems] == [2]
    assert files(tmp_path) == []


def test_an_iterator_that_fails_leaves_no_shard_behind(tmp_path: Path) -> None:
    def broken() -> Iterator[dict]:
        for i in range(10):
            yield chat(i)
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_shards(broken(), tmp_path, OPENAI, max_requests_per_file=2)
    assert files(tmp_path) == []


def test_no_requests_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no requests"):
        write_shards([], tmp_path, OPENAI)


def test_endpoint_argument_is_enforced(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        write_shards([chat(1)], tmp_path, OPENAI, endpoint=EMBEDDINGS)
    assert [(p.line, p.field) for p in err.value.problems][0] == (1, "url")


def test_batch_request_objects_are_accepted(tmp_path: Path) -> None:
    manifest = write_shards([BatchRequest(**chat(i)) for i in range(3)], tmp_path, NEBIUS)
    assert manifest.total_requests == 3
    assert next(iter_requests(manifest.shards[0].path)) == chat(0)


def test_requests_from_a_dataframe(tmp_path: Path) -> None:
    df = pd.DataFrame({"doc_id": [101, 102, 103, 104, 105], "text": list("abcde")})

    def body(row: dict) -> dict:
        return {"model": "e1", "input": f"passage: {row['text']}"}

    requests = list(requests_from_dataframe(df, body, "doc_id", EMBEDDINGS, chunk_rows=2))
    assert [r["custom_id"] for r in requests] == ["101", "102", "103", "104", "105"]
    assert requests[2]["body"] == {"model": "e1", "input": "passage: c"}
    manifest = write_shards(
        requests_from_dataframe(df, body, "doc_id", EMBEDDINGS),
        tmp_path,
        OPENAI,
        max_requests_per_file=2,
    )
    assert [s.lines for s in manifest.shards] == [2, 2, 1]
    assert manifest.endpoint == EMBEDDINGS
    with pytest.raises(ConfigurationError, match="nope"):
        next(requests_from_dataframe(df, body, "nope", EMBEDDINGS))


def test_dataframe_with_a_missing_id_is_rejected(tmp_path: Path) -> None:
    df = pd.DataFrame({"key": ["a", None, "c"], "text": ["x", "y", "z"]})
    with pytest.raises(InvalidInputError) as err:
        write_shards(
            requests_from_dataframe(
                df, lambda r: {"model": "e", "input": r["text"]}, "key", EMBEDDINGS
            ),
            tmp_path,
            OPENAI,
        )
    assert [(p.line, p.field) for p in err.value.problems] == [(2, "custom_id")]


def test_iter_requests_tolerates_bom_crlf_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        lines_mod.BOM + orjson.dumps(chat(1)) + b"\r\n" + orjson.dumps(chat(2)) + b"\r\n"
    )
    assert list(iter_requests(path)) == [chat(1), chat(2)]
    path.write_bytes(orjson.dumps(chat(1)) + b"\n{oops\n")
    with pytest.raises(InvalidInputError) as err:
        list(iter_requests(path))
    assert err.value.problems[0].line == 2
    assert err.value.problems[0].source == str(path)


def test_small_write_blocks_keep_content_and_duplicate_lines_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch_workflows.requests import shards as shards_mod

    monkeypatch.setattr(shards_mod, "_FLUSH_BYTES", 300)  # a block every few lines
    monkeypatch.setattr(duplicates_mod, "DUPLICATE_BUFFER", 5)
    good = [chat(i) for i in range(60)]
    manifest = write_shards(good, tmp_path / "ok", OPENAI, max_requests_per_file=7)
    assert [r for s in manifest.shards for r in iter_requests(s.path)] == good
    bad = [chat(i) for i in range(60)]
    bad[20]["method"] = "GET"  # a slow-path line between blocks of good ones
    bad[41] = chat(33)  # request 42 reuses r33 (line 34)
    bad[58] = chat(0)  # request 59 reuses r0 (line 1)
    with pytest.raises(InvalidInputError) as err:
        write_shards(bad, tmp_path / "bad", OPENAI, max_requests_per_file=7)
    assert [(p.line, p.field) for p in err.value.problems] == [
        (21, "method"),
        (42, "custom_id"),
        (59, "custom_id"),
    ]
    assert "(first used on line 34)" in err.value.problems[1].reason
    assert "(first used on line 1)" in err.value.problems[2].reason
    assert files(tmp_path / "bad") == []
