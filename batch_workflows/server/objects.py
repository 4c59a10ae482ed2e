"""OpenAI-shaped JSON objects and error envelopes.

Optional fields that have no value are left out rather than sent as null: the published
schemas type them as plain strings/integers, and the `openai` SDK reads a missing field as None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from batch_workflows.backends.base import BackendResult, error_body

_TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def api_error(status: int, message: str, code: str | None = None,
              param: str | None = None) -> JSON:
    """An error response in OpenAI's envelope."""
    return JSON(error_body(message, code=code, param=param, status_code=status),
                status_code=status)


def result_response(result: BackendResult) -> JSON:
    """A backend's result (response object or error envelope) as the HTTP answer."""
    return JSON(result.body, status_code=int(result.status_code))


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    obj = {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": row["status"],
    }
    if row.get("expires_at") is not None:
        obj["expires_at"] = row["expires_at"]
    return obj


def batch_object(row: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": row["id"],
        "object": "batch",
        "endpoint": row["endpoint"],
        "input_file_id": row["input_file_id"],
        "completion_window": row["completion_window"],
        "status": row["status"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "request_counts": {
            "total": row["total"],
            "completed": row["completed"],
            "failed": row["failed"],
        },
        "metadata": orjson.loads(row["metadata"]) if row["metadata"] else None,
    }
    if row.get("model"):
        obj["model"] = row["model"]
    if row.get("errors"):
        obj["errors"] = {"object": "list", "data": orjson.loads(row["errors"])}
    for key in ("output_file_id", "error_file_id", *_TIMESTAMPS):
        if row.get(key) is not None:
            obj[key] = row[key]
    if row.get("in_progress_at") is not None:
        obj["usage"] = {
            "input_tokens": row["input_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": row["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": row["input_tokens"] + row["output_tokens"],
        }
    return obj


def list_object(rows: list[dict[str, Any]], limit: int,
                render: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A page of a list call: the first `limit` rows rendered; rows were fetched with one more
    than `limit`, so a row past it means has_more."""
    data = [render(row) for row in rows[:limit]]
    obj: dict[str, Any] = {"object": "list", "data": data, "has_more": len(rows) > limit}
    obj["first_id"] = data[0]["id"] if data else ""
    obj["last_id"] = data[-1]["id"] if data else ""
    return obj
