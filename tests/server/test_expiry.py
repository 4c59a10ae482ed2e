"""A short completion window: finished lines stay, the rest go to the error file as
batch_expired, and every custom_id has exactly one line."""

from __future__ import annotations

from pathlib import Path

import openai
from support.server import start_server

from .helpers import read_lines, wait_for, write_requests

TOTAL = 6000


def test_window_passes_mid_batch(tmp_path: Path) -> None:
    # Tiny chunks keep the batch running well past a 5 s window on any machine.
    with start_server(tmp_path, completion_window="5s", chunk_size=2, workers=1) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model="all-MiniLM-L6-v2", input="warm up")  # load the model
        file_id = client.files.create(
            file=write_requests(tmp_path / "in.jsonl", TOTAL).open("rb"), purpose="batch"
        ).id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        assert batch.expires_at == batch.created_at + 5
        done = wait_for(client, batch.id, timeout=120)
        assert done.status == "expired" and done.expired_at >= done.expires_at
        finished = read_lines(client, done.output_file_id)
        expired = read_lines(client, done.error_file_id)
        assert 0 < len(finished) < TOTAL
        assert len(finished) == done.request_counts.completed
        assert len(expired) == done.request_counts.failed == TOTAL - len(finished)
        assert all(line["response"]["status_code"] == 200 for line in finished)
        assert all(line["response"] is None and line["error"]["code"] == "batch_expired"
                   for line in expired)
        ids = [line["custom_id"] for line in finished + expired]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(TOTAL))


def test_window_passes_inside_a_long_chunk(tmp_path: Path) -> None:
    # Default chunking: one chunk holds the whole file, far longer than the 5 s window. The
    # running chunk stops at the window; finished requests keep their lines, and every other
    # request gets exactly one batch_expired line.
    total = 3000
    with start_server(tmp_path, completion_window="5s", workers=1) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model="all-MiniLM-L6-v2", input="warm up")
        file_id = client.files.create(
            file=write_requests(tmp_path / "in.jsonl", total, repeat=12).open("rb"),
            purpose="batch",
        ).id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        done = wait_for(client, batch.id, timeout=60)
        assert done.status == "expired"
        finished = read_lines(client, done.output_file_id)
        expired = read_lines(client, done.error_file_id)
        assert len(finished) == done.request_counts.completed < total
        assert len(expired) == done.request_counts.failed == total - len(finished)
        assert all(line["error"]["code"] == "batch_expired" for line in expired)
        ids = [line["custom_id"] for line in finished + expired]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(total))


def test_window_passes_while_queued(tmp_path: Path) -> None:
    # One slot, held by a long batch (one request per fsync'd chunk); the second batch asks
    # for a 2 s window and expires while still waiting for the slot.
    with start_server(tmp_path, max_concurrent_batches=1, chunk_size=1, workers=2) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model="all-MiniLM-L6-v2", input="warm up")
        ids = []
        for name, n, window in (("long", 3000, "24h"), ("queued", 25, "2s")):
            file_id = client.files.create(
                file=write_requests(tmp_path / f"{name}.jsonl", n, prefix=name).open("rb"),
                purpose="batch",
            ).id
            ids.append(client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                             completion_window=window).id)  # type: ignore[arg-type]
        done = wait_for(client, ids[1], timeout=60)
        running = client.batches.retrieve(ids[0])
        client.batches.cancel(ids[0])
        assert running.status == "in_progress"  # the slot was still held: it expired queued
        assert done.status == "expired" and done.in_progress_at is None
        assert done.output_file_id is None
        expired = read_lines(client, done.error_file_id)
        assert sorted(line["custom_id"] for line in expired) == sorted(
            f"queued-{i}" for i in range(25))
        assert all(line["response"] is None and line["error"]["code"] == "batch_expired"
                   for line in expired)
        counts = done.request_counts
        assert (counts.total, counts.completed, counts.failed) == (25, 0, 25)


def test_a_server_with_a_longer_window_keeps_a_longer_batch(tmp_path: Path) -> None:
    # "48h" is refused by a 24 h server (test_batches) but kept by one started with 72h.
    with start_server(tmp_path, completion_window="72h") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        file_id = client.files.create(
            file=write_requests(tmp_path / "in.jsonl", 1).open("rb"), purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                      completion_window="48h")  # type: ignore[arg-type]
        assert batch.completion_window == "48h"
        assert batch.expires_at == batch.created_at + 48 * 3600
