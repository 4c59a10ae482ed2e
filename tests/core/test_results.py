"""Result reading: join output and error files to the submitted requests by custom_id."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest

from batch_workflows.errors import InvalidInputError
from batch_workflows.results import (
    ERRORED,
    FAILED,
    MISSING,
    SCHEMA,
    SUCCEEDED,
    CorruptResultError,
    ResultSet,
    join_results,
)
from batch_workflows.results.arrow_rows import RESULT_LINE_SCHEMA

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"


def request(cid: str, model: str = "gpt-4o-mini", url: str = CHAT) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": f"about {cid}"}]}
    if url == EMB:
        body = {"model": model, "input": f"text {cid}"}
    return {"custom_id": cid, "method": "POST", "url": url, "body": body}


def chat_ok(cid: str, content: str = "hello", finish: str = "stop", tokens=(10, 5)) -> dict:
    body = {
        "id": f"chatcmpl-{cid}",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1],
            "total_tokens": sum(tokens),
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    return {"id": f"batch_req_{cid}", "custom_id": cid,
            "response": {"status_code": 200, "request_id": f"req_{cid}", "body": body},
            "error": None}  # fmt: skip


def http_failed(cid: str, status: int = 429, code: str | None = "rate_limit_exceeded") -> dict:
    body = {"error": {"message": f"failed {status}", "type": "requests", "param": None, "code": code}}
    return {"id": f"batch_req_{cid}", "custom_id": cid,
            "response": {"status_code": status, "request_id": f"req_{cid}", "body": body},
            "error": None}  # fmt: skip


def expired(cid: str) -> dict:
    return {"id": f"batch_req_{cid}", "custom_id": cid, "response": None,
            "error": {"code": "batch_expired",
                      "message": "This request could not be executed before the completion window expired."}}  # fmt: skip


def emb_ok(cid: str, vectors: list[list[float]], b64: bool = False, order=None) -> dict:
    data = []
    for i, v in enumerate(vectors):
        value = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() if b64 else v
        data.append({"object": "embedding", "index": i, "embedding": value})
    if order is not None:
        data = [data[i] for i in order]
    body = {"object": "list", "data": data, "model": "all-MiniLM-L6-v2",
            "usage": {"prompt_tokens": 4, "total_tokens": 4}}  # fmt: skip
    return {"id": f"batch_req_{cid}", "custom_id": cid,
            "response": {"status_code": 200, "request_id": f"req_{cid}", "body": body},
            "error": None}  # fmt: skip


def write_jsonl(path: Path, objs: list, prefix: bytes = b"", newline: bytes = b"\n") -> str:
    path.write_bytes(prefix + b"".join(orjson.dumps(o) + newline for o in objs))
    return str(path)


def rows_by_id(rs: ResultSet) -> dict[str, dict]:
    return {r["custom_id"]: r for r in rs.to_arrow().to_pylist()}


@pytest.fixture
def chat_case(tmp_path: Path) -> tuple[str, str, str]:
    """r1, r3 succeed; r2 fails with 429; r4 expired (error file); r5 has no line at all."""
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(f"r{i}") for i in range(1, 6)])
    out = write_jsonl(
        tmp_path / "out.jsonl",
        [chat_ok("r3", "three", "length", (7, 3)), http_failed("r2"), chat_ok("r1", "one")],
    )
    err = write_jsonl(tmp_path / "err.jsonl", [expired("r4")])
    return reqs, out, err


def test_any_order_and_every_status(chat_case: tuple[str, str, str]) -> None:
    rs = join_results(*chat_case)
    assert rs.counts == {SUCCEEDED: 2, FAILED: 1, ERRORED: 1, MISSING: 1}
    assert rs.total == 5 and not rs.all_succeeded
    assert rs.error_breakdown == {"batch_expired": 1, "rate_limit_exceeded": 1}
    rows = rows_by_id(rs)
    assert list(rows) == ["r1", "r2", "r3", "r4", "r5"]  # one partition: submission order
    assert rows["r1"]["status"] == SUCCEEDED and rows["r1"]["content"] == "one"
    assert rows["r1"]["status_code"] == 200 and rows["r1"]["finish_reason"] == "stop"
    assert (rows["r1"]["prompt_tokens"], rows["r1"]["completion_tokens"]) == (10, 5)
    assert rows["r3"]["content"] == "three" and rows["r3"]["finish_reason"] == "length"
    assert rows["r3"]["model"] == "gpt-4o-mini-2024-07-18"
    assert rows["r2"]["status"] == FAILED and rows["r2"]["status_code"] == 429
    assert rows["r2"]["error_code"] == "rate_limit_exceeded"
    assert rows["r2"]["error_message"] == "failed 429" and rows["r2"]["content"] is None
    assert rows["r4"]["status"] == ERRORED and rows["r4"]["status_code"] is None
    assert rows["r4"]["error_code"] == "batch_expired"
    assert "completion window" in rows["r4"]["error_message"]
    assert rows["r5"]["status"] == MISSING and rows["r5"]["error_code"] is None
    assert rows["r5"]["model"] == "gpt-4o-mini"  # from the request, since nothing came back
    assert rs.prompt_tokens == 17 and rs.completion_tokens == 8 and rs.total_tokens == 25
    assert rs.models == {
        "gpt-4o-mini-2024-07-18": {
            "requests": 2, "prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25,
        }
    }  # fmt: skip
    assert sorted(rs.iter_unfinished_ids()) == ["r2", "r4", "r5"]
    assert rs.unexpected == 0 and rs.duplicates == 0


def test_parquet_has_documented_columns(chat_case: tuple[str, str, str], tmp_path: Path) -> None:
    out = tmp_path / "res" / "results.parquet"
    out.parent.mkdir()
    rs = join_results(*chat_case, out_path=out, row_group_rows=2)
    assert rs.path == str(out) and rs.table is None
    pf = pq.ParquetFile(out)
    assert pf.schema_arrow == SCHEMA
    assert pf.schema_arrow.names == [
        "custom_id", "status", "status_code", "error_code", "error_message", "model", "content",
        "finish_reason", "embedding", "embeddings", "prompt_tokens", "completion_tokens",
        "total_tokens",
    ]  # fmt: skip
    assert pf.metadata.num_rows == 5 and pf.metadata.num_row_groups == 3
    df = rs.to_dataframe()
    assert list(df["status"]) == [SUCCEEDED, FAILED, SUCCEEDED, ERRORED, MISSING]
    assert sorted(rs.iter_unfinished_ids()) == ["r2", "r4", "r5"]
    # no temporary files left beside the result
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.parquet"]
    again = ResultSet.from_parquet(out)
    assert (again.counts, again.error_breakdown, again.models) == (
        rs.counts, rs.error_breakdown, rs.models,
    )  # fmt: skip


def test_embeddings_float_base64_and_multi_input(tmp_path: Path) -> None:
    v1, v2, v3 = [0.5, -1.25, 3.0], [1.0, 2.0, 0.0], [0.125, 0.25, -0.5]
    reqs = write_jsonl(
        tmp_path / "req.jsonl", [request(c, "all-MiniLM-L6-v2", EMB) for c in ("a", "b", "c")]
    )
    for name, b64 in (("floats", False), ("base64", True)):
        out = write_jsonl(
            tmp_path / f"{name}.jsonl",
            [emb_ok("a", [v1], b64), emb_ok("b", [v1, v2, v3], b64, order=[2, 0, 1]),
             emb_ok("c", [v3], b64)],
        )  # fmt: skip
        rs = join_results(reqs, out)
        rows = rows_by_id(rs)
        assert rs.counts[SUCCEEDED] == 3, name
        assert rows["a"]["embedding"] == v1 and rows["a"]["embeddings"] is None, name
        assert rows["b"]["embedding"] is None and rows["b"]["embeddings"] == [v1, v2, v3], name
        assert rows["c"]["embedding"] == v3, name
        assert (rows["a"]["prompt_tokens"], rows["a"]["completion_tokens"]) == (4, 0), name
        assert rs.models["all-MiniLM-L6-v2"]["prompt_tokens"] == 12, name
    assert SCHEMA.field("embedding").type == pa.list_(pa.float32())


def test_duplicates_prefer_success_and_unexpected_ids_are_reported(tmp_path: Path) -> None:
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(c) for c in ("a", "b", "c")])
    out = write_jsonl(
        tmp_path / "out.jsonl",
        [http_failed("a", 500, None), chat_ok("a", "won"), chat_ok("zz"), http_failed("b", 500)],
    )
    err = write_jsonl(tmp_path / "err.jsonl", [expired("a"), expired("b"), expired("ghost")])
    rs = join_results(reqs, out, err)
    rows = rows_by_id(rs)
    assert rs.counts == {SUCCEEDED: 1, FAILED: 1, ERRORED: 0, MISSING: 1}
    assert rows["a"]["status"] == SUCCEEDED and rows["a"]["content"] == "won"
    assert rows["b"]["status"] == FAILED and rows["b"]["status_code"] == 500  # failed beats expired
    assert rs.duplicates == 3  # two extra lines for a, one for b
    assert rs.unexpected == 2 and sorted(rs.unexpected_sample) == ["ghost", "zz"]
    assert rs.total == 3  # never-submitted ids get no row


def test_failure_without_code_is_counted_by_http_status(tmp_path: Path) -> None:
    reqs = write_jsonl(tmp_path / "req.jsonl", [request("a")])
    out = write_jsonl(tmp_path / "out.jsonl", [http_failed("a", 503, None) | {}])
    line = orjson.loads(Path(out).read_bytes())
    line["response"]["body"]["error"]["type"] = None
    Path(out).write_bytes(orjson.dumps(line) + b"\n")
    rs = join_results(reqs, out)
    assert rs.error_breakdown == {"http_503": 1}


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    reqs = write_jsonl(tmp_path / "req.jsonl", [request("a"), request("b")],
                       prefix=b"\xef\xbb\xbf", newline=b"\r\n")  # fmt: skip
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(chat_ok("b")) + b"\r\n\r\n"
                    + orjson.dumps(chat_ok("a")))  # fmt: skip
    rs = join_results(reqs, out)
    assert rs.counts[SUCCEEDED] == 2


def test_corrupt_result_line_names_file_and_line(chat_case: tuple[str, str, str], tmp_path: Path) -> None:
    reqs, out, _ = chat_case
    lines = Path(out).read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(lines[0] + lines[1] + b'{"custom_id": "r1", "response": {"status_co\n' + lines[2])
    with pytest.raises(CorruptResultError) as info:
        join_results(reqs, bad)
    assert info.value.problem.line == 3 and info.value.problem.source == str(bad)
    assert f"{bad}:3" in str(info.value) and "not valid JSON" in str(info.value)
    # valid JSON, wrong shape: the field is named
    bad.write_bytes(lines[0] + b'{"custom_id": "r1", "response": {"body": {}}, "error": null}\n')
    with pytest.raises(CorruptResultError, match=r":2: response.status_code"):
        join_results(reqs, bad)
    bad.write_bytes(b'{"custom_id": "r1", "response": null, "error": null}\n')
    with pytest.raises(CorruptResultError, match=r":1: neither"):
        join_results(reqs, bad)


def test_a_failure_that_is_no_malformed_line_is_not_called_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what a malformed line raises becomes CorruptResultError; a MemoryError (here from
    the JSON library, on the line-by-line reader's path) propagates as itself."""
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(c, url=EMB) for c in "ab"])
    # a base64 vector: Arrow's reader refuses the block, so each line goes through orjson
    out = write_jsonl(tmp_path / "out.jsonl", [emb_ok("a", [[1.0]], b64=True), emb_ok("b", [[2.0]])])
    real_loads = orjson.loads
    failed: list[bytes] = []

    def loads(data: bytes | str) -> object:  # fails once, as an allocation might
        if b'"custom_id":"b"' in bytes(data) and not failed:
            failed.append(bytes(data))
            raise MemoryError
        return real_loads(data)

    monkeypatch.setattr(orjson, "loads", loads)
    with pytest.raises(MemoryError):
        join_results(reqs, out)
    assert failed


def test_corrupt_line_number_in_a_later_block(tmp_path: Path) -> None:
    n = 300
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(f"id-{i}") for i in range(n)])
    objs = [chat_ok(f"id-{i}") for i in range(n)]
    out = tmp_path / "out.jsonl"
    lines = [orjson.dumps(o) + b"\n" for o in objs]
    lines[250] = b"this is not json\n"
    out.write_bytes(b"".join(lines))
    with pytest.raises(CorruptResultError) as info:
        join_results(reqs, out, block_bytes=4096)
    assert info.value.problem.line == 251


def test_bad_request_line_names_file_and_line(tmp_path: Path) -> None:
    reqs = tmp_path / "req.jsonl"
    reqs.write_bytes(orjson.dumps(request("a")) + b"\n" + b'{"method": "POST"}\n')
    out = write_jsonl(tmp_path / "out.jsonl", [chat_ok("a")])
    with pytest.raises(InvalidInputError, match=r"req.jsonl:2: custom_id"):
        join_results(reqs, out)


def _mixed_case(tmp_path: Path, n: int = 3000) -> tuple[str, str, str]:
    """Every shape, shuffled, with duplicates, unexpected ids and odd lines for the slow reader."""
    rng = random.Random(5)
    reqs = [request(f"req-{i:05d}", model=f"m{i % 3}") for i in range(n)]
    out, err = [], []
    for i in range(n):
        cid, k = f"req-{i:05d}", i % 10
        if k < 6:
            out.append(chat_ok(cid, f"answer {i} " * (i % 7), tokens=(i % 50, i % 9)))
        elif k == 6:
            out.append(http_failed(cid, 429 if i % 2 else 500))
        elif k == 7:
            err.append(expired(cid))
        elif k == 8:
            out.append(emb_ok(cid, [[i / 7.0, -1.0], [0.5, i]], b64=i % 20 == 8))
        # k == 9: missing
        if i % 97 == 0:
            err.append(expired(cid))  # duplicate
    out += [chat_ok(f"stray-{j}") for j in range(5)]
    odd = chat_ok("req-00009")
    odd["response"]["body"]["choices"][0]["message"]["content"] = [{"type": "text", "text": "x"}]
    out.append(odd)  # content as a list of parts: the slow reader for its block
    rng.shuffle(out)
    rng.shuffle(err)
    return (write_jsonl(tmp_path / "req.jsonl", reqs), write_jsonl(tmp_path / "out.jsonl", out),
            write_jsonl(tmp_path / "err.jsonl", err))  # fmt: skip


def test_partitions_and_blocks_do_not_change_the_rows(tmp_path: Path) -> None:
    files = _mixed_case(tmp_path)
    one = join_results(*files, partitions=1)
    many = join_results(*files, out_path=tmp_path / "r.parquet", partitions=7, block_bytes=20_000)
    assert many.counts == one.counts and many.error_breakdown == one.error_breakdown
    assert (many.unexpected, many.duplicates, many.models) == (one.unexpected, one.duplicates, one.models)
    # 31 extra expired lines, 3 of them for otherwise missing ids
    assert one.unexpected == 5 and one.duplicates == 28
    a = one.to_arrow().sort_by("custom_id")
    b = many.to_arrow().sort_by("custom_id")
    assert a.equals(b)
    assert a.num_rows == 3000 and len(set(a.column("custom_id").to_pylist())) == 3000
    rows = {r["custom_id"]: r for r in a.to_pylist()}
    assert rows["req-00008"]["embeddings"] == [[8 / 7.0, -1.0], [0.5, 8.0]] or np.allclose(
        rows["req-00008"]["embeddings"], [[8 / 7.0, -1.0], [0.5, 8.0]]
    )
    assert rows["req-00009"]["content"] == '[{"type":"text","text":"x"}]'  # kept, as JSON text


def test_slow_reader_matches_fast_reader(tmp_path: Path) -> None:
    """A block that needs the line-by-line reader gives the same rows as the Arrow reader."""
    reqs, out, err = _mixed_case(tmp_path, 400)
    lines = [ln for ln in Path(out).read_bytes().splitlines(keepends=True)
             if b'"text","text"' not in ln and b'"embedding":"' not in ln]  # fmt: skip
    fast = tmp_path / "fast.jsonl"
    fast.write_bytes(b"".join(lines))
    slow = tmp_path / "slow.jsonl"  # one base64 vector forces the whole block to the slow reader
    slow.write_bytes(b"".join(lines) + orjson.dumps(emb_ok("stray-b64", [[1.0]], b64=True)) + b"\n")
    # the premise: Arrow's reader takes the first file and refuses the second
    options = pj.ParseOptions(explicit_schema=RESULT_LINE_SCHEMA, unexpected_field_behavior="ignore")
    assert pj.read_json(fast, parse_options=options).num_rows == len(lines)
    with pytest.raises(pa.ArrowInvalid):
        pj.read_json(slow, parse_options=options)
    a = join_results(reqs, fast, err).to_arrow()
    b = join_results(reqs, slow, err).to_arrow()
    assert a.num_rows == 400 and a.equals(b)


def test_odd_but_valid_shapes(tmp_path: Path) -> None:
    """Shapes Arrow's reader refuses or that carry nulls: read by either reader, same rules."""
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(c) for c in "abcdef"])
    no_choices = chat_ok("a")
    no_choices["response"]["body"]["choices"] = []
    no_usage = chat_ok("b", "bee")
    no_usage["response"]["body"]["usage"] = None
    text_error = {"id": "x", "custom_id": "c", "error": None,
                  "response": {"status_code": 400, "body": {"error": "bad request"}}}  # fmt: skip
    top_error = {"id": "y", "custom_id": "d", "error": {"code": "server_error", "message": "boom"},
                 "response": {"status_code": 502, "body": None}}  # fmt: skip
    completion = chat_ok("e")
    completion["response"]["body"]["choices"] = [{"index": 0, "text": "legacy", "finish_reason": "length"}]
    for name, lines in (("one", [no_choices, no_usage, text_error, top_error, completion]),
                        ("each", None)):  # fmt: skip
        if lines is None:  # every shape alone in its file: each block read on its own
            files = [write_jsonl(tmp_path / f"{name}{i}.jsonl", [obj]) for i, obj in
                     enumerate([no_choices, no_usage, text_error, top_error, completion])]  # fmt: skip
        else:
            files = [write_jsonl(tmp_path / f"{name}.jsonl", lines)]
        rows = rows_by_id(join_results(reqs, files))
        assert rows["a"]["status"] == SUCCEEDED and rows["a"]["content"] is None, name
        assert rows["b"]["content"] == "bee" and rows["b"]["prompt_tokens"] is None, name
        assert (rows["c"]["status"], rows["c"]["status_code"], rows["c"]["error_message"]) == (
            FAILED, 400, "bad request"), name  # fmt: skip
        assert (rows["d"]["error_code"], rows["d"]["error_message"]) == ("server_error", "boom"), name
        assert (rows["e"]["content"], rows["e"]["finish_reason"]) == ("legacy", "length"), name
        assert rows["f"]["status"] == MISSING, name


def test_empty_inputs_give_an_empty_table(tmp_path: Path) -> None:
    reqs = tmp_path / "req.jsonl"
    reqs.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"\n")
    rs = join_results(reqs, out, out_path=tmp_path / "r.parquet")
    assert rs.total == 0 and rs.all_succeeded
    assert pq.read_table(tmp_path / "r.parquet").schema == SCHEMA


def test_non_numeric_vector_is_a_corrupt_line(tmp_path: Path) -> None:
    reqs = write_jsonl(tmp_path / "req.jsonl", [request(c, url=EMB) for c in "ab"])
    bad = emb_ok("b", [[1.0, 2.0]])
    bad["response"]["body"]["data"][0]["embedding"] = [1.0, "two"]
    out = write_jsonl(tmp_path / "out.jsonl", [emb_ok("a", [[0.5, 0.5]]), bad])
    with pytest.raises(CorruptResultError) as info:
        join_results(reqs, out)
    assert info.value.problem.line == 2 and info.value.problem.field == "response.body.data.embedding"
