"""One shared server (embedding backend loads once) and its openai SDK client."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from support.server import ServerHandle, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    # No chat model: these tests check a server without one (test_chat.py starts its own).
    with start_server(tmp_path_factory.mktemp("server"), max_upload_bytes=200_000,
                      max_body_bytes=100_000, chat_model="none") as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server: ServerHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
