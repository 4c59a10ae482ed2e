"""Reading what a client sent: a JSON body under a size cap, the `limit` query parameter, and
the stored object an id names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from batch_workflows.errors import ApiError


def limit_param(request: Request, default: int, maximum: int) -> int:
    """The `limit` query parameter of a list call: `default` when absent, 1..`maximum`."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "limit must be an integer", "limit") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"limit must be between 1 and {maximum}", "limit")
    return value


async def json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object in the body, read with a size cap (413 above it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
    except ClientDisconnect:
        raise ApiError(400, "Request body incomplete.") from None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return obj


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"Request body is larger than {max_bytes} bytes.", None,
                    "request_too_large")


async def stored_or_404(lookup: Callable[[str], dict[str, Any] | None], object_id: str,
                        kind: str, param: str) -> dict[str, Any]:
    """`lookup(object_id)` run in the threadpool; 404 "No such <kind> object" if it is None."""
    row = await run_in_threadpool(lookup, object_id)
    if row is None:
        raise ApiError(404, f"No such {kind} object: {object_id}", param)
    return row
