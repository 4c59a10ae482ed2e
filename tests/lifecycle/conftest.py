"""Fixtures for the engine-level lifecycle tests (no Dagster): the shared local server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lifecycle_server import shared_server
from support.server import ServerHandle

from batch_workflows.client import BatchClient

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def server() -> ServerHandle:
    return shared_server()


@pytest.fixture
def client(server) -> Iterator[BatchClient]:
    with BatchClient(server.base_url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def asset_name() -> str:
    return f"e{uuid.uuid4().hex[:8]}"


def write_requests(path: Path, n: int, prefix: str = "r", text: str = "hello") -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"custom_id": f"{prefix}{i}", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"model": MODEL, "input": f"{text} {i}"}}) + "\n")
    return path
