"""Which backend serves which endpoint (routing by batch_workflows.backends.build_backends).

Building the backends is cheap; each model loads on its first run(), so the server starts fast.
Backends are used only through the Backend protocol (batch_workflows/backends/base.py), which
lets batch workers and real-time requests call run() at once: each backend serialises its model
itself (the embedding backend one encode window at a time), and an upstream backend bounds its
own concurrency.
"""

from __future__ import annotations

import logging
from typing import Any

from batch_workflows.backends.base import StopCheck, never
from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.server.settings import ServerSettings

log = logging.getLogger("batch_workflows.server")

ENDPOINTS = (CHAT, EMBEDDINGS)


class BackendRegistry:
    """The backends of one server, one per endpoint."""

    def __init__(self, settings: ServerSettings):
        from batch_workflows.backends import build_backends

        s = settings
        self._backends: dict[str, Any] = build_backends(
            embedding_model=s.embedding_model,
            chat_model=s.chat_model,
            upstream_url=s.upstream_url,
            upstream_api_key=s.upstream_api_key,
            upstream_rpm=s.upstream_rpm,
            upstream_tpm=s.upstream_tpm,
            upstream_concurrency=s.upstream_concurrency,
            upstream_endpoints=s.upstream_endpoints,
        )
        for endpoint, backend in self._backends.items():
            log.info("%s served by %s", endpoint, type(backend).__name__)

    def configured(self, endpoint: str) -> bool:
        return endpoint in self._backends

    def get(self, endpoint: str) -> Any:
        """The backend for `endpoint`; ConfigurationError if none."""
        try:
            return self._backends[endpoint]
        except KeyError:
            raise ConfigurationError(f"no backend serves {endpoint} on this server") from None

    @staticmethod
    def serves(backend: Any, model: Any) -> bool:
        ids = list(getattr(backend, "model_ids", None) or [])
        return not ids or model in ids  # an upstream with no list accepts any model

    def run(self, endpoint: str, bodies: list[dict], should_stop: StopCheck = never) -> list[Any]:
        return self.get(endpoint).run(bodies, should_stop)

    def model_ids(self) -> list[tuple[str, str]]:
        """(model id, endpoint) pairs of every backend (loads nothing)."""
        return [(m, e) for e, b in self._backends.items() for m in (b.model_ids or [])]

    def close(self) -> None:
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception as exc:  # closing must not stop the shutdown
                log.warning("closing a backend failed: %s", exc)
