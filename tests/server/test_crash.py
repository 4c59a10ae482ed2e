"""kill -9 during a batch, restart on the same data dir: exactly one line per custom_id, and
requests whose results were committed before a crash are never run again."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import openai
import pytest
from support.server import start_server

from .helpers import read_lines, wait_for, write_requests

TOTAL, CHUNK = 300, 10
RUN_LINE = re.compile(r"batch (batch_\w+): running requests (\d+)-(\d+)")


def _runs_per_life(log: str, batch_id: str) -> list[list[tuple[int, int]]]:
    """The (first, last) request ranges handed to the backend, per server process lifetime."""
    lives: list[list[tuple[int, int]]] = []
    for line in log.splitlines():
        if "Started server process" in line:
            lives.append([])
        match = RUN_LINE.search(line)
        if match and match.group(1) == batch_id:
            lives[-1].append((int(match.group(2)), int(match.group(3))))
    return lives


def test_kill_9_mid_batch_resumes_exactly_once(tmp_path: Path) -> None:
    with start_server(tmp_path, chunk_size=CHUNK, workers=1) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        file_id = client.files.create(
            file=write_requests(tmp_path / "in.jsonl", TOTAL).open("rb"), purpose="batch"
        ).id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        srv.kill()  # right after create, whatever it was doing
        srv.restart()
        committed_at_kill = []
        for threshold in (60, 180):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                counts = client.batches.retrieve(batch.id).request_counts
                if counts.completed >= threshold:
                    break
                time.sleep(0.01)
            srv.kill()
            # With one worker and all-200 results, `completed` is the committed prefix;
            # it is read back after the kill, from the store the restarted server opens.
            srv.restart()
            counts = client.batches.retrieve(batch.id).request_counts
            committed_at_kill.append(counts.completed)
        done = wait_for(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts.completed == TOTAL and done.request_counts.failed == 0
        lines = read_lines(client, done.output_file_id) + read_lines(client, done.error_file_id)
        ids = [line["custom_id"] for line in lines]
        assert len(ids) == TOTAL and set(ids) == {f"req-{i}" for i in range(TOTAL)}
        assert all(line["response"]["status_code"] == 200 for line in lines)
        assert all(len(line["response"]["body"]["data"][0]["embedding"]) == 384 for line in lines)

        mid_batch = [c for c in committed_at_kill if 0 < c < TOTAL]
        assert len(mid_batch) >= 2, committed_at_kill  # the kills really landed mid-batch
        lives = _runs_per_life(srv.log_text(), batch.id)
        # Lives 0,1 precede the first threshold kill; life k+2 starts after kill k.
        for committed, life in zip(committed_at_kill, lives[2:], strict=False):
            if life:
                assert min(first for first, _ in life) >= committed, (committed, life)
        runs = [i for life in lives for first, last in life for i in range(first, last + 1)]
        assert set(runs) == set(range(TOTAL))
        # Only a chunk in flight at a kill can run twice: at most one per kill.
        assert len(runs) - TOTAL <= 3 * CHUNK


def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with start_server(tmp_path) as srv:
        with pytest.raises(RuntimeError, match="another server is already using"):
            start_server(tmp_path, data_dir=srv.data_dir)
        srv.kill()  # the lock dies with the process: a restart takes the dir over at once
        srv.restart()
        assert httpx.get(f"{srv.root_url}/health").status_code == 200


def test_restart_sweeps_bodies_and_records_left_half_done(tmp_path: Path) -> None:
    with start_server(tmp_path) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        kept, lost = (
            client.files.create(file=write_requests(tmp_path / f"{n}.jsonl", 2).open("rb"),
                                purpose="batch").id
            for n in ("kept", "lost")
        )
        srv.kill()
        files = srv.data_dir / "files"
        # As a crash between the disk step and the database step leaves them: a body whose
        # upload never got its row, and a row whose body a delete already removed.
        orphan = files / "file-0123456789abcdef01234567"
        orphan.write_bytes(b'{"custom_id": "x"}\n')
        (files / lost).unlink()
        srv.restart()
        assert not orphan.exists() and (files / kept).exists()
        assert client.files.retrieve(kept).id == kept
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(lost)
        listed = {f.id for f in client.files.list()}
        assert kept in listed and lost not in listed
        assert "removed 1 file bodies without a record and 1 records without a body" in (
            srv.log_text())
