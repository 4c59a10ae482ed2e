"""The request line of an OpenAI-format batch input file (the HTTP/config boundary)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from batch_workflows.errors import ConfigurationError


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


def is_terminal(batch: Mapping[str, Any]) -> bool:
    """Whether a batch object is done for good (its output and error files are final)."""
    return batch.get("status") in TERMINAL_STATUSES


def is_live(batch: Mapping[str, Any]) -> bool:
    """Whether a batch is still running and a cancel would stop it (not terminal, not cancelling)."""
    return not is_terminal(batch) and batch.get("status") != "cancelling"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> int:
    """Seconds in a completion window such as "24h", "30s", "15m", "2d" or "90" (seconds)."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ConfigurationError(f"bad duration {text!r}: use e.g. 24h, 15m, 30s")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]
