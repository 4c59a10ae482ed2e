"""Fixtures for the Dagster lifecycle tests: the shared local server, stores, resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from dagster import DagsterInstance
from support.lifecycle_server import shared_server
from support.server import ServerHandle

from batch_workflows.dagster import ArtifactStore


@pytest.fixture(scope="session")
def server() -> ServerHandle:
    return shared_server()


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(base_uri=str(tmp_path / "artifacts"))


@pytest.fixture
def flow_name() -> str:
    """A fresh asset name per test: batches of other tests on the shared server never match."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst
