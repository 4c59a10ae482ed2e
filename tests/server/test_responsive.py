"""The server stays responsive under load: handlers never block the event loop on SQLite
(while the database's write lock is held, as a worker's fsync'd commit holds it, a write
request waits and everything else answers), and real-time requests do not queue behind a
whole batch chunk."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import openai
from support.server import start_server

from .helpers import EMBED_MODEL, wait_for, write_requests


def test_health_and_reads_answer_while_a_write_waits_for_the_lock(tmp_path: Path) -> None:
    with start_server(tmp_path) as srv:
        with open(write_requests(tmp_path / "in.jsonl", 2), "rb") as handle:
            file_id = httpx.post(f"{srv.base_url}/files", files={"file": handle},
                                 data={"purpose": "batch"}).json()["id"]
        db = sqlite3.connect(srv.data_dir / "state.sqlite3", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")  # hold the write lock, as a long commit would
        created: list[httpx.Response] = []
        writer = threading.Thread(target=lambda: created.append(httpx.post(
            f"{srv.base_url}/batches", timeout=60,
            json={"input_file_id": file_id, "endpoint": "/v1/embeddings",
                  "completion_window": "24h"})))
        writer.start()
        try:
            time.sleep(0.5)
            assert writer.is_alive()  # the create really waits for the lock
            start = time.monotonic()
            assert httpx.get(f"{srv.root_url}/health", timeout=5).status_code == 200
            assert httpx.get(f"{srv.base_url}/files/{file_id}", timeout=5).status_code == 200
            assert httpx.get(f"{srv.base_url}/models", timeout=5).status_code == 200
            assert time.monotonic() - start < 2
            assert writer.is_alive()
        finally:
            db.execute("ROLLBACK")
            db.close()
        writer.join(timeout=30)
        assert created and created[0].status_code == 200, created
        assert created[0].json()["status"] == "validating"


def test_realtime_embedding_is_answered_between_the_windows_of_a_running_chunk(
    tmp_path: Path,
) -> None:
    # One chunk of 3,000 long texts runs for a minute or more on a CPU; a real-time request
    # gets the model between two encode windows instead of waiting for the whole chunk.
    with start_server(tmp_path, workers=1) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        client.embeddings.create(model=EMBED_MODEL, input="warm up")
        with open(write_requests(tmp_path / "in.jsonl", 3000, repeat=12), "rb") as handle:
            file_id = client.files.create(file=handle, purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        wait_for(client, batch.id, statuses={"in_progress"})
        time.sleep(2)  # the chunk is read and encoding
        answer = client.embeddings.create(model=EMBED_MODEL, input="is anyone there?")
        running = client.batches.retrieve(batch.id)
        client.batches.cancel(batch.id)
        assert len(answer.data[0].embedding) == 384
        assert running.status == "in_progress" and running.request_counts.completed == 0
