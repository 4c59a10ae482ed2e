"""`serve --max-requests-per-file/--max-bytes-per-file`: oversize input files fail the batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support.server import start_server

from .helpers import EMBED_MODEL, wait_for, write_requests

MAX_REQUESTS = 3
MAX_BYTES = 2_000


@pytest.fixture(scope="module")
def small_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with start_server(tmp_path_factory.mktemp("limits"), max_requests_per_file=MAX_REQUESTS,
                      max_bytes_per_file=MAX_BYTES) as srv:
        yield openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)


def _run(client: openai.OpenAI, path: Path):
    file_id = client.files.create(file=path.open("rb"), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    return wait_for(client, batch.id)


def test_too_many_requests_fails_the_batch_naming_the_line(
    small_client: openai.OpenAI, tmp_path: Path
) -> None:
    done = _run(small_client, write_requests(tmp_path / "five.jsonl", 5))
    assert done.status == "failed" and done.output_file_id is None
    [error] = done.errors.data
    assert error.code == "too_many_requests" and error.line == MAX_REQUESTS + 1
    assert error.message.startswith("five.jsonl:4: ")
    assert f"{MAX_REQUESTS} requests per file" in error.message


def test_too_many_bytes_fails_the_batch_naming_the_line(
    small_client: openai.OpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "wide.jsonl"
    with open(path, "w") as handle:  # three requests of about 900 bytes: the third passes 2,000
        for i in range(MAX_REQUESTS):
            body = {"model": EMBED_MODEL, "input": f"text {i} " + "word " * 170}
            line = {"custom_id": f"w-{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": body}
            handle.write(json.dumps(line) + "\n")
    done = _run(small_client, path)
    assert done.status == "failed"
    [error] = done.errors.data
    assert error.code == "file_too_large" and error.line == 3
    assert f"{MAX_BYTES:,} bytes per file" in error.message


def test_a_file_at_the_request_limit_runs(small_client: openai.OpenAI, tmp_path: Path) -> None:
    done = _run(small_client, write_requests(tmp_path / "three.jsonl", MAX_REQUESTS))
    assert done.status == "completed", done.errors
    assert done.request_counts.total == MAX_REQUESTS
