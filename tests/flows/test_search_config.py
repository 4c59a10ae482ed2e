"""Where `batch-workflows search` embeds the query, and what its errors may carry."""

from __future__ import annotations

import pytest
from support.proxy import FaultProxy

from batch_workflows.errors import ConfigurationError, ProviderError
from batch_workflows.flows.embeddings.query import QueryEmbedder
from batch_workflows.flows.embeddings.search import query_base_url


def test_provider_model_uses_the_provider_profile_when_no_base_url(monkeypatch):
    monkeypatch.delenv("BATCH_BASE_URL", raising=False)
    monkeypatch.setenv("BATCH_PROVIDER", "openai")
    assert query_base_url("text-embedding-3-small") == "https://api.openai.com/v1"
    monkeypatch.setenv("BATCH_PROVIDER", "nebius")
    assert query_base_url("BAAI/bge-en-icl") == "https://api.studio.nebius.com/v1"
    # BATCH_BASE_URL wins over the profile, --base-url over both.
    monkeypatch.setenv("BATCH_BASE_URL", "http://127.0.0.1:9/v1/")
    assert query_base_url("BAAI/bge-en-icl") == "http://127.0.0.1:9/v1"
    assert query_base_url("BAAI/bge-en-icl", "http://example.test/v1") == "http://example.test/v1"
    # The shipped model is embedded in-process unless a base URL is forced.
    assert query_base_url("all-MiniLM-L6-v2") is None
    monkeypatch.delenv("BATCH_BASE_URL")
    monkeypatch.setenv("BATCH_PROVIDER", "acme")
    with pytest.raises(ConfigurationError, match="BATCH_BASE_URL"):
        query_base_url("some-model")


def test_a_failed_real_time_call_never_carries_the_api_key(server):
    key = "sk-test-" + "k3y" * 30  # long: a cut through it would leave a prefix behind
    with FaultProxy(server.base_url) as proxy:
        proxy.add("echo", method="POST", path=r"/v1/embeddings")  # echoes the request headers
        embedder = QueryEmbedder("all-MiniLM-L6-v2", proxy.base_url, api_key=key)
        with pytest.raises(ProviderError) as info:
            embedder.embed(["hello"])
    err = info.value
    assert err.status_code == 500
    assert err.body_excerpt  # the server's answer is kept, redacted
    for text in (str(err), err.body_excerpt):
        assert key[:12] not in text
