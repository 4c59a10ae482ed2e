"""The worker reads its input in chunks bounded by request count and by bytes."""

import orjson

from batch_workflows.server.worker import read_chunk


def _write(path, n, text_bytes):
    with open(path, "wb") as f:
        for i in range(n):
            body = {"model": "m", "input": "x" * text_bytes}
            f.write(orjson.dumps({"custom_id": f"r{i}", "method": "POST",
                                  "url": "/v1/embeddings", "body": body}) + b"\n")


def _read_all(path, limit, max_bytes):
    offset, seen, rounds = 0, [], 0
    while True:
        chunk = read_chunk(path, offset, limit, max_bytes=max_bytes)
        seen += [cid for cid, _ in chunk.items]
        offset, rounds = chunk.end_offset, rounds + 1
        if chunk.eof:
            return seen, rounds


def test_byte_budget_cuts_chunks_of_large_requests(tmp_path):
    path = tmp_path / "in.jsonl"
    _write(path, 10, 1000)
    first = read_chunk(path, 0, limit=100, max_bytes=3000)
    assert [cid for cid, _ in first.items] == ["r0", "r1", "r2"]
    assert not first.eof
    seen, rounds = _read_all(path, limit=100, max_bytes=3000)
    assert seen == [f"r{i}" for i in range(10)]
    assert rounds == 4


def test_one_request_larger_than_the_budget_still_makes_progress(tmp_path):
    path = tmp_path / "in.jsonl"
    _write(path, 3, 5000)
    seen, rounds = _read_all(path, limit=100, max_bytes=100)
    assert seen == ["r0", "r1", "r2"]
    assert rounds == 3


def test_count_limit_still_applies_to_small_requests(tmp_path):
    path = tmp_path / "in.jsonl"
    _write(path, 10, 10)
    seen, rounds = _read_all(path, limit=4, max_bytes=1 << 20)
    assert seen == [f"r{i}" for i in range(10)]
    assert rounds == 3
