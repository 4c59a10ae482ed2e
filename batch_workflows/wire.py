"""The request line of an OpenAI-format batch input file (the HTTP/config boundary)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field


class BatchRequest(BaseModel):
    """`{"custom_id", "method", "url", "body"}` — one line of a batch input file."""

    custom_id: str = Field(min_length=1)
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]

    def to_line(self) -> bytes:
        """The JSONL line, newline included."""
        return orjson.dumps(self.model_dump()) + b"\n"


# Batch object facts shared by the client, the lifecycle and the local server: the statuses
# after which a batch never changes, and OpenAI's limits on a batch's `metadata`.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
# OpenAI's limit on the items of an embeddings request's `input` array.
MAX_INPUTS_PER_REQUEST = 2048
