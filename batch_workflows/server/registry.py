"""Which backend serves which endpoint; built lazily on first use so the server starts fast.

Backends are used only through the Backend protocol (batch_workflows/backends/base.py).
Calls into one backend are serialised by a lock: local models are not re-entrant, and an
upstream backend runs its own bounded concurrency inside one run() call.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.server.settings import ServerSettings

log = logging.getLogger("batch_workflows.server")

ENDPOINTS = (CHAT, EMBEDDINGS)


class BackendRegistry:
    """Lazily built backends, one per endpoint."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._backends: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {e: threading.Lock() for e in ENDPOINTS}
        self._build_lock = threading.Lock()

    def _upstream(self, endpoint: str) -> bool:
        return bool(self.settings.upstream_url) and endpoint in self.settings.upstream_endpoints

    def configured(self, endpoint: str) -> bool:
        """Whether some backend can serve `endpoint` (without loading anything)."""
        if endpoint == EMBEDDINGS:
            return True
        if endpoint == CHAT:
            return self._upstream(endpoint) or bool(self.settings.chat_model)
        return False

    def get(self, endpoint: str) -> Any:
        """The backend for `endpoint`, built on first use. ConfigurationError if none."""
        backend = self._backends.get(endpoint)
        if backend is not None:
            return backend
        with self._build_lock:
            if endpoint not in self._backends:
                self._backends[endpoint] = self._build(endpoint)
                log.info("backend for %s ready", endpoint)
            return self._backends[endpoint]

    def _build(self, endpoint: str) -> Any:
        s = self.settings
        if not self.configured(endpoint):
            raise ConfigurationError(f"no backend serves {endpoint} on this server")
        if self._upstream(endpoint):
            from batch_workflows.backends.upstream import UpstreamBackend

            return UpstreamBackend(
                base_url=s.upstream_url,
                endpoint=endpoint,
                api_key=s.upstream_api_key,
                rpm=s.upstream_rpm,
                tpm=s.upstream_tpm,
                concurrency=s.upstream_concurrency,
            )
        if endpoint == EMBEDDINGS:
            from batch_workflows.backends.embeddings import EmbeddingBackend

            return EmbeddingBackend(model_path=s.embedding_model)
        from batch_workflows.backends.chat import ChatBackend

        return ChatBackend(model_path=s.chat_model)

    @staticmethod
    def serves(backend: Any, model: Any) -> bool:
        ids = list(getattr(backend, "model_ids", None) or [])
        return not ids or model in ids  # an upstream with no list accepts any model

    def run(self, endpoint: str, bodies: list[dict]) -> list[Any]:
        """backend.run under the endpoint's lock."""
        backend = self.get(endpoint)
        with self._locks[endpoint]:
            return backend.run(bodies)

    def model_ids(self) -> list[tuple[str, str]]:
        """(model id, endpoint) pairs of the configured backends (builds them, loads nothing)."""
        pairs = []
        for endpoint in ENDPOINTS:
            if self.configured(endpoint):
                try:
                    backend = self.get(endpoint)
                except (ConfigurationError, ImportError, OSError) as exc:
                    log.warning("backend for %s unavailable: %s", endpoint, exc)
                    continue
                pairs += [(m, endpoint) for m in getattr(backend, "model_ids", [])]
        return pairs

    def close(self) -> None:
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception as exc:  # closing must not stop the shutdown
                log.warning("closing a backend failed: %s", exc)
