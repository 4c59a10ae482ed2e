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
