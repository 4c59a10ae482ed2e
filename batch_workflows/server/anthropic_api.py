"""Anthropic's Message Batches API and real-time Messages, over the engine's own batches.

A message batch is an ordinary engine batch on the chat endpoint, marked ``extra.api =
"anthropic"``: its inline requests are translated to chat lines and stored as its input file, so
the worker, the durable store and crash recovery are the OpenAI side's. Ids are the engine's with
Anthropic's prefix (``msgbatch_…``). Results are read back from the output and error files and
translated per line; requests a cancel stopped before they ran are answered ``canceled``.
Reference: https://docs.anthropic.com/en/api/creating-message-batches and the official SDK's
types (``anthropic.types.messages``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batch_workflows.anthropic_batches.wire import (
    STATUS_ERROR,
    TranslationError,
    completion_to_message,
    messages_to_chat,
)
from batch_workflows.backends.base import model_not_found
from batch_workflows.errors import ApiError
from batch_workflows.profiles import CHAT
from batch_workflows.server.batches_api import start_cancel
from batch_workflows.server.http_input import json_body, stored_or_404
from batch_workflows.server.objects import JSON
from batch_workflows.server.state import ServerState, server_state
from batch_workflows.server.store import Store, new_file_id

API = "anthropic"
PREFIX = "msgbatch_"
MAX_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
WINDOW_SECONDS = 24 * 3600
ENDED = ("completed", "failed", "expired", "cancelled")


def external_id(batch_id: str) -> str:
    return PREFIX + batch_id.removeprefix("batch_")


def internal_id(message_batch_id: str) -> str:
    return "batch_" + message_batch_id.removeprefix(PREFIX)


def _iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


# -- batch objects ------------------------------------------------------------------------------
def message_batch(row: dict[str, Any], store: Store, base_url: str) -> dict[str, Any]:
    """The MessageBatch object for one engine batch row."""
    status = row["status"]
    ended = status in ENDED
    processing = "ended" if ended else ("canceling" if status == "cancelling" else "in_progress")
    if ended:
        counts = _request_counts(row, store)
    else:  # a batch still validating has no total yet: its input says how many
        total = row["total"] or _input_count(row, store)
        counts = {"processing": max(total - row["completed"] - row["failed"], 0),
                  "succeeded": row["completed"], "errored": row["failed"], "canceled": 0,
                  "expired": 0}
    ended_at = next((row.get(f"{s}_at") for s in ENDED if row.get(f"{s}_at")), None)
    ext = external_id(row["id"])
    return {
        "id": ext,
        "type": "message_batch",
        "processing_status": processing,
        "request_counts": counts,
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(row["expires_at"]),
        "ended_at": _iso(ended_at) if ended else None,
        "cancel_initiated_at": _iso(row.get("cancelling_at")),
        "archived_at": None,
        "results_url": f"{base_url}v1/messages/batches/{ext}/results" if ended else None,
    }


def _request_counts(row: dict[str, Any], store: Store) -> dict[str, int]:
    """Counts of an ended batch by result type (one pass over its error file)."""
    counts = {"processing": 0, "succeeded": row["completed"], "errored": 0, "canceled": 0,
              "expired": 0}
    if row["status"] == "failed":  # rejected at validation: every request errored
        counts["succeeded"], counts["errored"] = 0, row["total"] or _input_count(row, store)
        return counts
    for kind, _ in _error_results(row, store):
        counts[kind] += 1
    total = row["total"] or _input_count(row, store)
    counts["canceled"] += max(total - row["completed"] - row["failed"], 0)
    return counts


def _input_count(row: dict[str, Any], store: Store) -> int:
    return sum(1 for _ in _input_ids(row, store))


def _input_ids(row: dict[str, Any], store: Store) -> Iterator[str]:
    with open(store.file_path(row["input_file_id"]), "rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)["custom_id"]


# -- results ------------------------------------------------------------------------------------
def _lines(store: Store, file_id: str | None) -> Iterator[dict[str, Any]]:
    if not file_id:
        return
    path = store.file_path(file_id)
    if not path.exists():
        return
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def _error_results(row: dict[str, Any], store: Store) -> Iterator[tuple[str, dict[str, Any]]]:
    """(result type, result line) for each line of the error file."""
    for line in _lines(store, row.get("error_file_id")):
        response, error = line.get("response"), line.get("error") or {}
        if response is None and error.get("code") == "batch_expired":
            yield "expired", {"custom_id": line["custom_id"], "result": {"type": "expired"}}
            continue
        if response is not None:
            status = int(response.get("status_code") or 500)
            err = (response.get("body") or {}).get("error") or {}
            kind, message = STATUS_ERROR.get(status, "api_error"), err.get("message", "")
        else:
            kind, message = "api_error", error.get("message", "")
        yield "errored", {"custom_id": line["custom_id"], "result": {"type": "errored", "error": {
            "type": "error", "error": {"type": kind, "message": message},
            "request_id": (response or {}).get("request_id")}}}


def iter_results(row: dict[str, Any], store: Store) -> Iterator[bytes]:
    """The batch's results as JSONL: every request exactly once."""
    seen: set[str] = set()
    if row["status"] == "failed":  # the worker rejected the whole input: say why, per request
        reason = "; ".join(e.get("message", "") for e in orjson.loads(row["errors"] or "[]"))
        for cid in _input_ids(row, store):
            yield orjson.dumps({"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "invalid_request_error",
                                           "message": reason}}}}) + b"\n"
        return
    for line in _lines(store, row.get("output_file_id")):
        seen.add(line["custom_id"])
        body = line["response"]["body"]
        message = completion_to_message(body, body.get("id") or "msg_" + secrets.token_hex(12))
        yield orjson.dumps({"custom_id": line["custom_id"],
                            "result": {"type": "succeeded", "message": message}}) + b"\n"
    for _, result in _error_results(row, store):
        seen.add(result["custom_id"])
        yield orjson.dumps(result) + b"\n"
    for cid in _input_ids(row, store):  # cancelled before they ran
        if cid not in seen:
            yield orjson.dumps({"custom_id": cid, "result": {"type": "canceled"}}) + b"\n"


# -- handlers -----------------------------------------------------------------------------------
async def create_message_batch(request: Request) -> Response:
    state = server_state(request)
    body = await json_body(request, min(state.settings.max_upload_bytes, MAX_BATCH_BYTES))
    if not state.backends.configured(CHAT):
        raise ApiError(400, "this server has no chat backend for messages", "requests")
    lines = _chat_lines(body.get("requests"))
    row = await run_in_threadpool(_add_batch, state, lines)
    state.worker.wake()
    return JSON(message_batch(row, state.store, str(request.base_url)))


def _chat_lines(requests: Any) -> list[bytes]:
    """Each request as an engine input line; a 400 naming the request and field otherwise."""
    if not isinstance(requests, list) or not requests:
        raise ApiError(400, "requests: must be a non-empty list", "requests")
    if len(requests) > MAX_REQUESTS:
        raise ApiError(400, f"requests: at most {MAX_REQUESTS} requests per batch", "requests")
    seen: set[str] = set()
    lines = []
    for i, item in enumerate(requests):
        cid = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
            raise ApiError(400, f"requests.{i}.custom_id: String should match pattern "
                                "'^[a-zA-Z0-9_-]{1,64}$'", f"requests.{i}.custom_id")
        if cid in seen:
            raise ApiError(400, f"requests.{i}.custom_id: duplicate custom_id {cid!r}",
                           f"requests.{i}.custom_id")
        seen.add(cid)
        try:
            chat = messages_to_chat(item.get("params"))
        except TranslationError as exc:
            where = f"requests.{i}.params.{exc.param}"
            raise ApiError(400, f"{where}: {exc.args[0].split(': ', 1)[-1]}", where) from None
        lines.append(orjson.dumps({"custom_id": cid, "method": "POST", "url": CHAT,
                                   "body": chat}) + b"\n")
    return lines


def _add_batch(state: ServerState, lines: list[bytes]) -> dict[str, Any]:
    store = state.store
    file_id = new_file_id()
    tmp = store.tmp_dir / file_id
    with open(tmp, "wb") as out:
        out.writelines(lines)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, store.file_path(file_id))  # body first, then the row (swept if orphaned)
    store.add_file(file_id, store.file_path(file_id).stat().st_size, "message_batch.jsonl",
                   "batch")
    window = min(WINDOW_SECONDS, state.settings.completion_window_seconds)
    return store.add_batch(CHAT, file_id, "24h", window, None, {"api": API})


async def _row(request: Request) -> dict[str, Any]:
    batch_id = request.path_params["message_batch_id"]
    row = await stored_or_404(server_state(request).store.get_batch, internal_id(batch_id),
                              "Message batch", "message_batch_id")
    if not (row.get("extra") and orjson.loads(row["extra"]).get("api") == API):
        raise ApiError(404, f"No message batch with id {batch_id!r}", "message_batch_id")
    return row


async def retrieve_message_batch(request: Request) -> Response:
    row = await _row(request)
    state = server_state(request)
    obj = await run_in_threadpool(message_batch, row, state.store, str(request.base_url))
    return JSON(obj)


async def list_message_batches(request: Request) -> Response:
    state = server_state(request)
    query = request.query_params
    limit = _limit(query.get("limit"))
    after = internal_id(query["after_id"]) if query.get("after_id") else None
    before = internal_id(query["before_id"]) if query.get("before_id") else None
    rows = await run_in_threadpool(state.store.list_batches_of, API, limit + 1, after, before)
    has_more = len(rows) > limit
    # Before a cursor, the extra row is the newest one: the page is the `limit` nearest.
    page = (rows[1:] if before and not after else rows[:limit]) if has_more else rows
    data = [await run_in_threadpool(message_batch, r, state.store, str(request.base_url))
            for r in page]
    return JSON({"data": data, "has_more": has_more,
                 "first_id": data[0]["id"] if data else None,
                 "last_id": data[-1]["id"] if data else None})


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "limit: must be an integer from 1 to 1000", "limit")
    return int(raw)


async def cancel_message_batch(request: Request) -> Response:
    state = server_state(request)
    row = await run_in_threadpool(start_cancel, state, await _row(request))
    obj = await run_in_threadpool(message_batch, row, state.store, str(request.base_url))
    return JSON(obj)


async def message_batch_results(request: Request) -> Response:
    row = await _row(request)
    if row["status"] not in ENDED:
        raise ApiError(400, f"Message batch {external_id(row['id'])} has not ended yet; its "
                            "results are not available", "message_batch_id")
    store = server_state(request).store
    return StreamingResponse(iter_results(row, store), media_type="application/binary")


async def create_message(request: Request) -> Response:
    """Real-time `POST /v1/messages` on the chat backend."""
    state = server_state(request)
    params = await json_body(request, state.settings.max_body_bytes)
    if params.get("stream"):
        raise ApiError(400, "stream: not supported by this server", "stream")
    try:
        body = messages_to_chat(params)
    except TranslationError as exc:
        raise ApiError(400, str(exc), exc.param) from None
    backends = state.backends
    if not backends.configured(CHAT):
        raise ApiError(404, "this server has no chat backend", None, "not_found_error")
    backend = backends.get(CHAT)
    if not backends.serves(backend, body["model"]):
        result = model_not_found(body["model"], backend.model_ids)
        raise ApiError(404, result.body["error"]["message"], "model")
    (result,) = await run_in_threadpool(backends.run, CHAT, [body])
    if int(result.status_code) != 200:
        err = (result.body or {}).get("error") or {}
        raise ApiError(int(result.status_code), err.get("message", "request failed"))
    return JSON(completion_to_message(result.body, "msg_" + secrets.token_hex(12)))


ROUTES = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages/batches", create_message_batch, methods=["POST"]),
    Route("/v1/messages/batches", list_message_batches, methods=["GET"]),
    Route("/v1/messages/batches/{message_batch_id}", retrieve_message_batch, methods=["GET"]),
    Route("/v1/messages/batches/{message_batch_id}/cancel", cancel_message_batch,
          methods=["POST"]),
    Route("/v1/messages/batches/{message_batch_id}/results", message_batch_results,
          methods=["GET"]),
]
