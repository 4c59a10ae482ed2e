"""Embed query texts with the same model that embedded the collection.

Two routes, chosen by the model:

* a model the local engine serves from disk (all-MiniLM-L6-v2, the default): in-process, through
  the very `EmbeddingBackend` the engine's worker uses, so query vectors are the engine's
  vectors and no server has to be running (the demo's engine is gone when you search later);
* any other model (a provider's): the provider's real-time `/v1/embeddings` at `base_url`.

`base_url` given explicitly always wins (e.g. to query through a running engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from batch_workflows.errors import ConfigurationError, ProviderError
from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL_IDS
from batch_workflows.redaction import excerpt

EXCERPT = 300  # characters of a failed response kept in the error (the key redacted first)


class QueryEmbedder:
    """`embed(texts) -> list[list[float]]` for one model; reuse it for many queries."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
    ):
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_key = api_key
        self.timeout = timeout
        self._backend: Any = None
        if self.base_url is None and model not in DEFAULT_EMBEDDING_MODEL_IDS:
            raise ConfigurationError(
                f"model {model!r} is not served locally: set BATCH_PROVIDER or BATCH_BASE_URL "
                "(and BATCH_API_KEY) to the provider that embedded the collection"
            )

    @property
    def route(self) -> str:
        return f"real-time {self.base_url}/embeddings" if self.base_url else "in-process"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        body = {"model": self.model, "input": list(texts)}
        if self.base_url:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            resp = httpx.post(
                f"{self.base_url}/embeddings", json=body, headers=headers, timeout=self.timeout
            )
            if resp.status_code != 200:
                # A proxy or server may echo the Authorization header: never pass the key on.
                raise ProviderError(
                    f"real-time embeddings at {self.base_url} failed",
                    resp.status_code,
                    excerpt(resp.text, self.api_key, EXCERPT),
                )
            payload = resp.json()
        else:
            if self._backend is None:
                import os

                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bars in output
                from batch_workflows.backends.embeddings import EmbeddingBackend

                self._backend = EmbeddingBackend()
            result = self._backend.run([body])[0]
            if result.status_code != 200:
                raise ProviderError("local embedding failed", result.status_code, str(result.body))
            payload = result.body
        data = sorted(payload["data"], key=lambda d: d["index"])
        return [list(map(float, d["embedding"])) for d in data]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
