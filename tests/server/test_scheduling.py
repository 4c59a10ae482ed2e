"""Several batches share the worker fairly; the concurrent-batch limit queues the rest;
an upstream server is driven through --upstream-url."""

from __future__ import annotations

import re
import time
from pathlib import Path

import openai
from support.server import start_server

from .helpers import read_lines, wait_for, write_requests

RUN_LINE = re.compile(r"batch (batch_\w+): running requests")


def _create(client: openai.OpenAI, path: Path) -> str:
    file_id = client.files.create(file=path.open("rb"), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                 completion_window="24h").id


def test_round_robin_and_concurrency_limit(tmp_path: Path) -> None:
    with start_server(tmp_path, chunk_size=5, workers=1, max_concurrent_batches=2) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model="all-MiniLM-L6-v2", input="warm up")
        paths = [write_requests(tmp_path / f"in{i}.jsonl", 60, prefix=f"b{i}") for i in range(3)]
        first, second, third = (_create(client, p) for p in paths)
        # The third waits in `validating` while two batches hold the slots.
        seen_third_waiting = False
        while client.batches.retrieve(first).status != "completed":
            third_batch = client.batches.retrieve(third)
            if client.batches.retrieve(second).status == "in_progress":
                seen_third_waiting |= third_batch.status == "validating"
                assert third_batch.status == "validating"
            time.sleep(0.05)
        for batch_id in (first, second, third):
            done = wait_for(client, batch_id)
            assert done.status == "completed" and done.request_counts.completed == 60
        assert seen_third_waiting
        order = [m.group(1) for m in RUN_LINE.finditer(srv.log_text())]
        # While both ran, chunks alternated: no batch ran twice in a row before the other ended.
        both = order[: order.index(first, len(order) - order[::-1].index(first) - 1)]
        pairs = list(zip(both, both[1:], strict=False))
        assert sum(a == b for a, b in pairs) <= 2, order


def test_upstream_mode_forwards_to_another_server(tmp_path: Path) -> None:
    with start_server(tmp_path / "up") as upstream, start_server(
        tmp_path / "front",
        upstream_url=upstream.base_url,
        upstream_endpoints="/v1/embeddings",
        upstream_rpm=6000,
        upstream_concurrency=4,
    ) as front:
        client = openai.OpenAI(base_url=front.base_url, api_key=front.api_key, max_retries=0)
        batch_id = _create(client, write_requests(tmp_path / "in.jsonl", 12))
        done = wait_for(client, batch_id)
        assert done.status == "completed" and done.request_counts.completed == 12
        lines = read_lines(client, done.output_file_id)
        assert all(len(line["response"]["body"]["data"][0]["embedding"]) == 384 for line in lines)
        assert "UpstreamBackend" in front.log_text()
        assert "loaded embedding model" in upstream.log_text()
        assert "loaded embedding model" not in front.log_text()


def test_a_healthy_batch_runs_while_faulting_batches_back_off(tmp_path: Path) -> None:
    # Two faulting batches, as many as worker threads: a backoff that slept inside a thread
    # (2, 4, ... 30 s) would leave no thread for the healthy batch for about a minute.
    with start_server(tmp_path, chunk_size=5, workers=2) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model="all-MiniLM-L6-v2", input="warm up")
        faulting = []
        for i in range(2):
            path = write_requests(tmp_path / f"faulty{i}.jsonl", 5000, prefix=f"f{i}")
            file_id = client.files.create(file=path.open("rb"), purpose="batch").id
            batch_id = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                             completion_window="24h").id
            wait_for(client, batch_id, timeout=60, statuses={"in_progress"})
            # The input body vanishes from disk mid-run: every later step of the batch fails.
            (srv.data_dir / "files" / file_id).unlink()
            faulting.append(batch_id)
        deadline = time.monotonic() + 60
        while not all(f"batch {b}: step failed" in srv.log_text() for b in faulting):
            assert time.monotonic() < deadline, srv.log_text()[-3000:]
            time.sleep(0.05)
        healthy = _create(client, write_requests(tmp_path / "healthy.jsonl", 60, prefix="h"))
        done = wait_for(client, healthy, timeout=30)
        assert done.status == "completed" and done.request_counts.completed == 60
        for batch_id in faulting:  # still backing off, neither run nor failed yet
            assert client.batches.retrieve(batch_id).status == "in_progress"
