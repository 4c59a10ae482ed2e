"""build_backends: endpoint → backend from server settings values, nothing loaded up front."""

from __future__ import annotations

import pytest

from batch_workflows.backends import Backend, build_backends
from batch_workflows.backends.chat import ChatBackend
from batch_workflows.backends.embeddings import EmbeddingBackend
from batch_workflows.backends.upstream import UpstreamBackend
from batch_workflows.errors import ConfigurationError

CHAT, EMB = "/v1/chat/completions", "/v1/embeddings"


def test_default_is_local_embeddings_and_smollm2_chat_and_lazy():
    backends = build_backends()
    assert sorted(backends) == [CHAT, EMB]
    emb, chat = backends[EMB], backends[CHAT]
    assert isinstance(emb, EmbeddingBackend) and isinstance(emb, Backend)
    assert emb.model_ids == ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
    assert emb._model is None  # loads on the first run()
    assert isinstance(chat, ChatBackend) and isinstance(chat, Backend)
    assert chat.model_ids == ["SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert chat.model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and chat._model is None


def test_chat_model_may_be_a_gguf_file(tmp_path):
    backends = build_backends(chat_model=str(tmp_path / "other-model.Q8_0.gguf"))
    assert backends[CHAT].model_ids == ["other-model.Q8_0"]
    assert list(build_backends(chat_model="none")) == [EMB]


def test_chat_model_path_adds_a_local_chat_backend(tmp_path):
    backends = build_backends(chat_model=str(tmp_path / "my-chat"))
    assert isinstance(backends[CHAT], ChatBackend)
    assert backends[CHAT].model_ids == ["my-chat"]


def test_upstream_endpoints_go_upstream_with_the_limits():
    backends = build_backends(
        upstream_url="http://127.0.0.1:9/v1",
        upstream_api_key="sk-hidden",
        upstream_rpm=600,
        upstream_tpm=100_000,
        upstream_concurrency=4,
        upstream_endpoints=[CHAT],
    )
    up = backends[CHAT]
    assert isinstance(up, UpstreamBackend) and isinstance(backends[EMB], EmbeddingBackend)
    assert up.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (up.rpm, up.tpm, up.concurrency) == (600, 100_000, 4)
    assert up.max_batch >= 300  # about 30 s of work per run() call
    assert "sk-hidden" not in repr(up)
    both = build_backends(upstream_url="http://127.0.0.1:9/v1")
    assert all(isinstance(b, UpstreamBackend) for b in both.values()) and set(both) == {CHAT, EMB}


def test_unknown_upstream_endpoint_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        build_backends(upstream_url="http://127.0.0.1:9/v1", upstream_endpoints=["/v1/moderations"])
