"""The Files API: upload (streamed to disk), list, retrieve, download (with Range), delete.

Every store call and file-system change runs in the threadpool: a worker's fsync'd commit can
hold the database for a while, and the event loop must keep answering meanwhile.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from batch_workflows.errors import ApiError
from batch_workflows.server.http_input import limit_param, stored_or_404
from batch_workflows.server.objects import JSON, file_object, list_object
from batch_workflows.server.state import server_state
from batch_workflows.server.store import Store, new_file_id
from batch_workflows.server.upload import receive_upload

log = logging.getLogger("batch_workflows.server")

UPLOAD_PURPOSES = ("batch",)


class BigChunkFileResponse(FileResponse):
    chunk_size = 1 << 20  # fewer, larger reads/sends for multi-GB downloads


async def upload_file(request: Request) -> Response:
    state = server_state(request)
    store = state.store
    upload = await receive_upload(request, store.tmp_dir, state.settings.max_upload_bytes)
    purpose = upload.fields.get("purpose")
    if purpose not in UPLOAD_PURPOSES:
        await run_in_threadpool(upload.path.unlink, missing_ok=True)
        raise ApiError(400, f"purpose must be one of {list(UPLOAD_PURPOSES)}", "purpose")
    file_id = new_file_id()
    row = await run_in_threadpool(_register_upload, store, file_id, upload.path, upload.size,
                                  upload.filename, purpose)
    log.info("file %s uploaded (%d bytes)", file_id, upload.size)
    return JSON(file_object(row))


def _register_upload(store: Store, file_id: str, path: Path, size: int, filename: str,
                     purpose: str) -> dict[str, Any]:
    # Body first, then the row: a crash in between leaves an orphan body, swept at start.
    os.replace(path, store.file_path(file_id))
    return store.add_file(file_id, size, filename, purpose)


async def list_files(request: Request) -> Response:
    limit = limit_param(request, 10000, 10000)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "order must be asc or desc", "order")
    rows = await run_in_threadpool(server_state(request).store.list_files, limit + 1,
                                   request.query_params.get("after"),
                                   request.query_params.get("purpose"), order)
    return JSON(list_object(rows, limit, file_object))


async def retrieve_file(request: Request) -> Response:
    return JSON(file_object(await _file_row(request)))


async def _file_row(request: Request) -> dict[str, Any]:
    """The file named in the path; 404 if there is none."""
    return await stored_or_404(server_state(request).store.get_file,
                               request.path_params["file_id"], "File", "id")


async def file_content(request: Request) -> Response:
    row = await _file_row(request)
    # FileResponse streams from disk in chunks and honours Range (resumable downloads).
    return BigChunkFileResponse(server_state(request).store.file_path(row["id"]),
                                media_type="application/octet-stream")


async def delete_file(request: Request) -> Response:
    row = await _file_row(request)
    if not await run_in_threadpool(_delete_unused, server_state(request).store, row["id"]):
        raise ApiError(409, "The file is the input of a batch that is still running.", "id")
    return JSON({"id": row["id"], "object": "file", "deleted": True})


def _delete_unused(store: Store, file_id: str) -> bool:
    """Delete the file unless an active batch reads it; True if deleted."""
    if store.file_in_use(file_id):
        return False
    # Row first, then the body: a crash in between leaves an orphan body, swept at start.
    store.delete_file(file_id)
    store.file_path(file_id).unlink(missing_ok=True)
    return True


ROUTES = [
    Route("/v1/files", upload_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
]
