"""Bearer auth on every endpoint but /health; real-time embeddings and models."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from support.server import start_server

from .helpers import assert_schema, write_requests

KEY = "sk-test-SECRET-do-not-log-4242"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    with start_server(tmp_path_factory.mktemp("keyed"), api_key=KEY) as srv:
        yield srv


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/files"),
        ("POST", "/v1/files"),
        ("GET", "/v1/files/file-000000000000000000000000"),
        ("GET", "/v1/files/file-000000000000000000000000/content"),
        ("DELETE", "/v1/files/file-000000000000000000000000"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/batch_000000000000000000000000"),
        ("POST", "/v1/batches/batch_000000000000000000000000/cancel"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/nothing-here"),
    ],
)
def test_every_endpoint_needs_the_key(keyed, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        answer = httpx.request(method, keyed.root_url + path, headers=headers)
        assert answer.status_code == 401, (path, headers)
        assert_schema(answer.json(), "ErrorResponse")
        assert answer.json()["error"]["code"] == "invalid_api_key"


def test_health_is_open_and_the_key_works(keyed, tmp_path: Path) -> None:
    assert httpx.get(keyed.root_url + "/health").status_code == 200
    client = openai.OpenAI(base_url=keyed.base_url, api_key=KEY, max_retries=0)
    created = client.files.create(file=write_requests(tmp_path / "a.jsonl", 1).open("rb"),
                                  purpose="batch")
    assert client.files.retrieve(created.id).id == created.id
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.base_url, api_key="nope", max_retries=0).files.list()
    assert KEY not in keyed.log_text()


def test_realtime_embeddings(client: openai.OpenAI, server) -> None:
    answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "world"])
    assert len(answer.data) == 2 and answer.usage.prompt_tokens > 0
    assert all(len(d.embedding) == 384 and all(map(math.isfinite, d.embedding))
               for d in answer.data)
    hub = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2",
                                   input="hello", encoding_format="base64")
    raw = httpx.post(f"{server.base_url}/embeddings", headers=server.headers(),
                     json={"model": "all-MiniLM-L6-v2", "input": "hello",
                           "encoding_format": "base64"}).json()
    floats = httpx.post(f"{server.base_url}/embeddings", headers=server.headers(),
                        json={"model": "all-MiniLM-L6-v2", "input": "hello"}).json()
    assert_schema(floats, "CreateEmbeddingResponse")  # the spec types vectors as float arrays
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype=np.float32)
    assert vector.shape == (384,)
    hub_vector = np.frombuffer(base64.b64decode(hub.data[0].embedding), dtype=np.float32)
    assert np.allclose(vector, hub_vector, atol=1e-5)
    assert np.allclose(vector, answer.data[0].embedding, atol=1e-5)


def test_realtime_errors(client: openai.OpenAI, server) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="x")
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x",
                                 extra_body={"unsupported_knob": 1})
    with pytest.raises(openai.APIStatusError) as big:  # the fixture caps JSON bodies at 100 kB
        client.embeddings.create(model="all-MiniLM-L6-v2", input="word " * 30_000)
    assert big.value.status_code == 413
    bad = httpx.post(f"{server.base_url}/embeddings", content=b"{nope",
                     headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):  # no chat model on this server
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"} <= ids
    assert client.models.retrieve("sentence-transformers/all-MiniLM-L6-v2").object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nothing")
