"""The embeddings flow's settings, from ``EMBEDDING_MODEL`` and the ``EMBEDDINGS_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.embeddings.requests import (
    DEFAULT_INPUTS_PER_REQUEST,
    DEFAULT_TOKENS_PER_REQUEST,
)
from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL


@dataclass(frozen=True)
class EmbeddingsSettings:
    """The flow's knobs, read from the environment by the code location and the demo."""

    model: str = DEFAULT_EMBEDDING_MODEL
    # Its own folder: the inbox is read recursively, and the other flows' sit beside it.
    watch_uri: str = ".data/inbox/embeddings"
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    inputs_per_request: int = DEFAULT_INPUTS_PER_REQUEST
    tokens_per_request: int = DEFAULT_TOKENS_PER_REQUEST
    tokenizer: str | None = None  # a model folder, "regex", or None = the shipped model's
    id_field: str = "id"
    text_field: str = "text"
    text_unit: str = "file"
    pydoc_shards: int = 2
    check_sample: int = 8

    @classmethod
    def from_env(cls) -> EmbeddingsSettings:
        env = os.environ
        d = cls()

        def num(name: str, default: int) -> int:
            raw = env.get(name)
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None

        return cls(
            model=env.get("EMBEDDING_MODEL") or d.model,
            watch_uri=env.get("EMBEDDINGS_WATCH_URI") or d.watch_uri,
            chunk_tokens=num("EMBEDDINGS_CHUNK_TOKENS", d.chunk_tokens),
            chunk_overlap=num("EMBEDDINGS_CHUNK_OVERLAP", d.chunk_overlap),
            inputs_per_request=num("EMBEDDINGS_INPUTS_PER_REQUEST", d.inputs_per_request),
            tokens_per_request=num("EMBEDDINGS_TOKENS_PER_REQUEST", d.tokens_per_request),
            tokenizer=env.get("EMBEDDINGS_TOKENIZER") or None,
            id_field=env.get("EMBEDDINGS_ID_FIELD") or d.id_field,
            text_field=env.get("EMBEDDINGS_TEXT_FIELD") or d.text_field,
            text_unit=env.get("EMBEDDINGS_TEXT_UNIT") or d.text_unit,
            pydoc_shards=num("EMBEDDINGS_PYDOC_SHARDS", d.pydoc_shards),
            check_sample=num("EMBEDDINGS_CHECK_SAMPLE", d.check_sample),
        )
