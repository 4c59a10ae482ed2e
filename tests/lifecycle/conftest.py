"""Fixtures for the engine-level lifecycle tests (no Dagster): the shared local server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from support.lifecycle_server import shared_server
from support.server import ServerHandle

from batch_workflows.client import BatchClient


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
