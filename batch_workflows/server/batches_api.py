"""The Batches API: create, list, retrieve, cancel. The worker does the running."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_workflows.errors import ApiError, ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.server.http_input import json_body, limit_param, stored_or_404
from batch_workflows.server.objects import JSON, batch_object, list_object
from batch_workflows.server.state import ServerState, server_state
from batch_workflows.server.store import now
from batch_workflows.wire import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    parse_duration,
)

log = logging.getLogger("batch_workflows.server")

BATCH_ENDPOINTS = (CHAT, EMBEDDINGS)
KNOWN_CREATE_FIELDS = {"input_file_id", "endpoint", "completion_window", "metadata"}
CANCELLABLE = ("validating", "in_progress")
OPENAI_WINDOW = "24h"  # the only completion_window OpenAI's Batch API accepts


def check_metadata(metadata: Any) -> dict[str, str] | None:
    """OpenAI's metadata rules: ≤16 pairs, string keys ≤64 chars, string values ≤512 chars."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ApiError(400, "metadata must be an object of string keys and values", "metadata")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ApiError(400, f"metadata can have at most {MAX_METADATA_PAIRS} pairs", "metadata",
                       "metadata_too_many_pairs")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise ApiError(400, f"metadata keys can be at most {MAX_METADATA_KEY_CHARS} characters",
                           "metadata", "metadata_key_too_long")
        if not isinstance(value, str):
            raise ApiError(400, f"metadata value for {key!r} must be a string", "metadata")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise ApiError(400, f"metadata values can be at most {MAX_METADATA_VALUE_CHARS} characters",
                           "metadata", "metadata_value_too_long")
    return metadata


def _window_seconds(window: Any, state: ServerState) -> int:
    """The seconds a batch with this completion window gets.

    "24h", OpenAI's one value, is always taken; a server started with a shorter
    `--completion-window` (expiry tests) expires such batches at its own window. A shorter
    duration is honoured as asked. Anything else, e.g. "48h" on a 24 h server, is a 400: the
    server could not keep it."""
    limit = state.settings.completion_window_seconds
    try:
        seconds: int | None = parse_duration(window)
    except ConfigurationError:
        seconds = None
    if seconds is None or (window != OPENAI_WINDOW and seconds > limit):
        raise ApiError(
            400,
            f"Invalid value for 'completion_window': {window!r}. Supported values are: "
            f"{OPENAI_WINDOW!r} (this server also takes a shorter duration, up to "
            f"{_duration_text(limit)}).",
            "completion_window", "invalid_value")
    return min(seconds, limit)


def _duration_text(seconds: int) -> str:
    """`seconds` in the largest unit that divides it: 86400 → "24h", 90 → "90s"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_endpoint(endpoint: Any, state: ServerState) -> str:
    if endpoint not in BATCH_ENDPOINTS:
        raise ApiError(400, f"endpoint must be one of {list(BATCH_ENDPOINTS)}", "endpoint")
    if not state.backends.configured(endpoint):
        raise ApiError(400, f"this server has no backend for {endpoint}", "endpoint",
                       "unsupported_endpoint")
    return endpoint


async def create_batch(request: Request) -> Response:
    state = server_state(request)
    body = await json_body(request, state.settings.max_body_bytes)
    input_file_id = body.get("input_file_id")
    if not isinstance(input_file_id, str) or not input_file_id:
        raise ApiError(400, "input_file_id is required", "input_file_id")
    endpoint = _check_endpoint(body.get("endpoint"), state)
    window = body.get("completion_window", OPENAI_WINDOW)
    window_seconds = _window_seconds(window, state)
    metadata = check_metadata(body.get("metadata"))
    info = await stored_or_404(state.store.get_file, input_file_id, "File", "input_file_id")
    if info["purpose"] != "batch":
        raise ApiError(400, "the input file must have purpose 'batch'", "input_file_id")
    # Provider extras (e.g. Nebius override_settings) are kept, not interpreted.
    extra = {k: v for k, v in body.items() if k not in KNOWN_CREATE_FIELDS}
    row = await run_in_threadpool(state.store.add_batch, endpoint, input_file_id, str(window),
                                  window_seconds, metadata, extra)
    log.info("batch %s created for %s", row["id"], input_file_id)
    state.worker.wake()
    return JSON(batch_object(row))


async def retrieve_batch(request: Request) -> Response:
    return JSON(batch_object(await _batch_row(request)))


async def _batch_row(request: Request) -> dict[str, Any]:
    """The batch named in the path; 404 if there is none."""
    return await stored_or_404(server_state(request).store.get_batch,
                               request.path_params["batch_id"], "Batch", "batch_id")


async def list_batches(request: Request) -> Response:
    limit = limit_param(request, 20, 100)
    rows = await run_in_threadpool(server_state(request).store.list_batches, limit + 1,
                                   request.query_params.get("after"))
    return JSON(list_object(rows, limit, batch_object))


async def cancel_batch(request: Request) -> Response:
    row = await run_in_threadpool(start_cancel, server_state(request), await _batch_row(request))
    if row["status"] not in ("cancelling", "cancelled"):
        raise ApiError(409, f"Cannot cancel a batch with status {row['status']}.", None,
                       "batch_not_cancellable")
    return JSON(batch_object(row))


def start_cancel(state: ServerState, row: dict[str, Any]) -> dict[str, Any]:
    """Mark a running batch `cancelling` (the worker settles it); the batch as it is now."""
    if row["status"] in CANCELLABLE:
        state.store.update_batch(row["id"], only_if=CANCELLABLE, status="cancelling",
                                 cancelling_at=now())
        state.worker.wake()
        row = state.store.get_batch(row["id"]) or row
    return row


ROUTES = [
    Route("/v1/batches", create_batch, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
