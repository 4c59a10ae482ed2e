"""The HTTP API: OpenAI Files, Batches, real-time embeddings/chat, models, health."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from batch_workflows.backends.base import model_not_found
from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.server.objects import (
    JSON,
    api_error,
    batch_object,
    file_object,
    list_object,
    result_response,
)
from batch_workflows.server.registry import BackendRegistry
from batch_workflows.server.settings import ServerSettings, parse_duration
from batch_workflows.server.store import Store, lock_data_dir, new_file_id, now
from batch_workflows.server.upload import UploadError, receive_upload
from batch_workflows.server.worker import Worker
from batch_workflows.wire import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
)

log = logging.getLogger("batch_workflows.server")

UPLOAD_PURPOSES = ("batch",)
BATCH_ENDPOINTS = (CHAT, EMBEDDINGS)
KNOWN_CREATE_FIELDS = {"input_file_id", "endpoint", "completion_window", "metadata"}


class BigChunkFileResponse(FileResponse):
    chunk_size = 1 << 20  # fewer, larger reads/sends for multi-GB downloads


class ApiError(Exception):
    """Raised inside handlers; rendered in OpenAI's error envelope."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _limit(request: Request, default: int, maximum: int) -> int:
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


async def _json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object in the body, read with a size cap (413 above it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"Request body is larger than {max_bytes} bytes.", None,
                       "request_too_large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise ApiError(413, f"Request body is larger than {max_bytes} bytes.", None,
                               "request_too_large")
    except ClientDisconnect:
        raise ApiError(400, "Request body incomplete.") from None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return obj


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


def create_app(settings: ServerSettings) -> ASGIApp:
    """The ASGI app; the worker threads start and stop with the app's lifespan."""
    lock = lock_data_dir(settings.data_dir)
    store = Store(settings.data_dir)
    backends = BackendRegistry(settings)
    worker = Worker(settings, store, backends)
    # Every store call (SQLite) and file-system change of a handler runs in the threadpool via
    # run_in_threadpool: a worker's fsync'd commit can hold the database for a while, and the
    # event loop must keep answering meanwhile (/health, real-time calls, other clients).

    # -- files ----------------------------------------------------------------------------
    def _register_upload(file_id: str, path: Path, size: int, filename: str,
                         purpose: str) -> dict[str, Any]:
        # Body first, then the row: a crash in between leaves an orphan body, swept at start.
        os.replace(path, store.file_path(file_id))
        return store.add_file(file_id, size, filename, purpose)

    async def upload_file(request: Request) -> Response:
        try:
            upload = await receive_upload(request, store.tmp_dir, settings.max_upload_bytes)
        except UploadError as exc:
            raise ApiError(exc.status, exc.message, exc.param, exc.code) from None
        purpose = upload.fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            await run_in_threadpool(upload.path.unlink, missing_ok=True)
            raise ApiError(400, f"purpose must be one of {list(UPLOAD_PURPOSES)}", "purpose")
        file_id = new_file_id()
        row = await run_in_threadpool(_register_upload, file_id, upload.path, upload.size,
                                      upload.filename, purpose)
        log.info("file %s uploaded (%d bytes)", file_id, upload.size)
        return JSON(file_object(row))

    async def list_files(request: Request) -> Response:
        limit = _limit(request, 10000, 10000)
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError(400, "order must be asc or desc", "order")
        rows = await run_in_threadpool(store.list_files, limit + 1,
                                       request.query_params.get("after"),
                                       request.query_params.get("purpose"), order)
        data = [file_object(r) for r in rows[:limit]]
        return JSON(list_object(data, len(rows) > limit))

    async def _file(request: Request) -> dict[str, Any]:
        file_id = request.path_params["file_id"]
        row = await run_in_threadpool(store.get_file, file_id)
        if row is None:
            raise ApiError(404, f"No such File object: {file_id}", "id")
        return row

    async def retrieve_file(request: Request) -> Response:
        return JSON(file_object(await _file(request)))

    async def file_content(request: Request) -> Response:
        row = await _file(request)
        # FileResponse streams from disk in chunks and honours Range (resumable downloads).
        return BigChunkFileResponse(store.file_path(row["id"]),
                                    media_type="application/octet-stream")

    def _delete_file(file_id: str) -> bool:
        if store.file_in_use(file_id):
            return False
        # Row first, then the body: a crash in between leaves an orphan body, swept at start.
        store.delete_file(file_id)
        store.file_path(file_id).unlink(missing_ok=True)
        return True

    async def delete_file(request: Request) -> Response:
        row = await _file(request)
        if not await run_in_threadpool(_delete_file, row["id"]):
            raise ApiError(409, "The file is the input of a batch that is still running.", "id")
        return JSON({"id": row["id"], "object": "file", "deleted": True})

    # -- batches --------------------------------------------------------------------------
    async def create_batch(request: Request) -> Response:
        body = await _json_body(request, settings.max_body_bytes)
        input_file_id = body.get("input_file_id")
        endpoint = body.get("endpoint")
        window = body.get("completion_window", "24h")
        if not isinstance(input_file_id, str) or not input_file_id:
            raise ApiError(400, "input_file_id is required", "input_file_id")
        if endpoint not in BATCH_ENDPOINTS:
            raise ApiError(400, f"endpoint must be one of {list(BATCH_ENDPOINTS)}", "endpoint")
        if not backends.configured(endpoint):
            raise ApiError(400, f"this server has no backend for {endpoint}", "endpoint",
                           "unsupported_endpoint")
        try:
            window_seconds = parse_duration(window)
        except ConfigurationError:
            raise ApiError(400, "completion_window must be a duration such as 24h",
                           "completion_window") from None
        metadata = check_metadata(body.get("metadata"))
        info = await run_in_threadpool(store.get_file, input_file_id)
        if info is None:
            raise ApiError(404, f"No such File object: {input_file_id}", "input_file_id")
        if info["purpose"] != "batch":
            raise ApiError(400, "the input file must have purpose 'batch'", "input_file_id")
        # Provider extras (e.g. Nebius override_settings) are kept, not interpreted.
        extra = {k: v for k, v in body.items() if k not in KNOWN_CREATE_FIELDS}
        row = await run_in_threadpool(
            store.add_batch, endpoint, input_file_id, str(window),
            min(window_seconds, settings.completion_window_seconds), metadata, extra,
        )
        log.info("batch %s created for %s", row["id"], input_file_id)
        worker.wake()
        return JSON(batch_object(row))

    async def _batch(request: Request) -> dict[str, Any]:
        batch_id = request.path_params["batch_id"]
        row = await run_in_threadpool(store.get_batch, batch_id)
        if row is None:
            raise ApiError(404, f"No such Batch object: {batch_id}", "batch_id")
        return row

    async def retrieve_batch(request: Request) -> Response:
        return JSON(batch_object(await _batch(request)))

    async def list_batches(request: Request) -> Response:
        limit = _limit(request, 20, 100)
        rows = await run_in_threadpool(store.list_batches, limit + 1,
                                       request.query_params.get("after"))
        data = [batch_object(r) for r in rows[:limit]]
        return JSON(list_object(data, len(rows) > limit))

    def _cancel(row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] in ("validating", "in_progress"):
            store.update_batch(row["id"], only_if=("validating", "in_progress"),
                               status="cancelling", cancelling_at=now())
            worker.wake()
            row = store.get_batch(row["id"]) or row
        return row

    async def cancel_batch(request: Request) -> Response:
        row = await run_in_threadpool(_cancel, await _batch(request))
        if row["status"] not in ("cancelling", "cancelled"):
            raise ApiError(409, f"Cannot cancel a batch with status {row['status']}.", None,
                           "batch_not_cancellable")
        return JSON(batch_object(row))

    # -- real time ------------------------------------------------------------------------
    def realtime(endpoint: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            body = await _json_body(request, settings.max_body_bytes)
            if body.get("stream"):
                raise ApiError(400, "stream is not supported by this server", "stream")
            if not backends.configured(endpoint):
                raise ApiError(404, f"this server has no backend for {endpoint}", None,
                               "unsupported_endpoint")
            backend = backends.get(endpoint)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise ApiError(400, "model is required", "model")
            if not backends.serves(backend, model):
                return result_response(model_not_found(model, backend.model_ids))
            (result,) = await run_in_threadpool(backends.run, endpoint, [body])
            return result_response(result)

        return handler

    async def list_models(request: Request) -> Response:
        pairs = backends.model_ids()
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "batch-workflows"}
                for m, _ in pairs]
        return JSON({"object": "list", "data": data})

    async def retrieve_model(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        served = [m for m, _ in backends.model_ids()]
        if model_id not in served:
            return result_response(model_not_found(model_id, served))
        return JSON({"id": model_id, "object": "model", "created": 0,
                     "owned_by": "batch-workflows"})

    async def health(request: Request) -> Response:
        return JSON({"status": "ok"})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/embeddings", realtime(EMBEDDINGS), methods=["POST"]),
        Route("/v1/chat/completions", realtime(CHAT), methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    ]

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return api_error(exc.status, exc.message, exc.code, exc.param)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return api_error(exc.status_code, str(exc.detail), code)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return api_error(500, "The server had an error while processing your request.",
                         "server_error")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker.start()
        log.info("serving on http://%s:%d/v1 (data dir %s)", settings.host, settings.port,
                 settings.data_dir)
        try:
            yield
        finally:
            worker.stop()
            backends.close()

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash,
        },
        lifespan=lifespan,
    )
    app.state.store, app.state.worker, app.state.backends = store, worker, backends
    app.state.data_dir_lock = lock
    if settings.api_key:
        return BearerAuth(app, settings.api_key)
    return app


class BearerAuth:
    """ASGI middleware: every path but /health needs `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            header = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
                response = api_error(401, "Incorrect API key provided.", "invalid_api_key")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
