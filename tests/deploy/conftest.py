"""Fixtures of the daemon tests: the shared local engine."""

from __future__ import annotations

import pytest
from support.lifecycle_server import shared_server
from support.server import ServerHandle


@pytest.fixture(scope="session")
def server() -> ServerHandle:
    return shared_server()
