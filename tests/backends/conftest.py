"""Shared, expensive fixtures of the backend tests: one embedding model, one tiny chat model."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tiny_chat import build_tiny_chat_model

from batch_workflows.backends.chat import ChatBackend
from batch_workflows.backends.embeddings import EmbeddingBackend


@pytest.fixture(scope="session")
def embedder() -> EmbeddingBackend:
    backend = EmbeddingBackend(device="cpu")
    backend.load()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tiny_chat_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-llama")


@pytest.fixture(scope="session")
def chat(tiny_chat_path: Path) -> ChatBackend:
    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu")
    yield backend
    backend.close()
