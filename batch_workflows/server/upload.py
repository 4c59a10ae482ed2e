"""Streaming multipart upload: the file part goes straight to disk in chunks, never to memory.

An upload over the size limit is drained (so the client sees the 413 rather than a reset
connection) and leaves nothing behind. A refused upload raises ApiError, answered as OpenAI's
error envelope.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from batch_workflows.errors import ApiError

FLUSH_BYTES = 1 << 20
MAX_FIELD_BYTES = 4096


@dataclass
class Upload:
    path: Path
    size: int
    filename: str
    fields: dict[str, str]


@dataclass
class _ParseState:
    """What the multipart callbacks know so far: the current part, the file written, the fields."""

    tmp_path: Path
    max_bytes: int
    handle: BinaryIO
    name: str = ""
    filename: str | None = None
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    in_file: bool = False
    seen_file: bool = False
    size: int = 0
    too_big: bool = False
    value: bytearray = field(default_factory=bytearray)
    pending: bytearray = field(default_factory=bytearray)
    fields: dict[str, str] = field(default_factory=dict)


async def receive_upload(request: Request, tmp_dir: Path, max_bytes: int) -> Upload:
    """Parse a multipart body; the `file` part lands in a temp file under `tmp_dir`."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(400, "Expected a multipart/form-data body with a `file` part.")
    tmp_path = tmp_dir / f"upload-{secrets.token_hex(12)}.part"
    # Closed in the finally below on every path.
    state = _ParseState(tmp_path=tmp_path, max_bytes=max_bytes, handle=open(tmp_path, "wb"))  # noqa: SIM115
    parser = MultipartParser(params[b"boundary"], _callbacks(state))
    kept = False
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state.pending and not state.too_big and len(state.pending) >= FLUSH_BYTES:
                await _flush(state)
        parser.finalize()
        if state.too_big:
            raise ApiError(
                413, f"File is larger than the server limit of {max_bytes} bytes.",
                "file", "file_too_large",
            )
        if not state.seen_file:
            raise ApiError(400, "Missing the `file` part.", "file")
        await _flush(state)
        await anyio.to_thread.run_sync(_sync_close, state.handle)
        kept = True
        return Upload(state.tmp_path, state.size, state.filename or "upload.jsonl", state.fields)
    except ClientDisconnect:
        raise ApiError(400, "Upload interrupted.") from None
    except ValueError as exc:  # python-multipart's parse errors derive from ValueError
        raise ApiError(400, f"Invalid multipart body: {exc}") from None
    finally:
        state.handle.close()
        if not kept:  # a refused or broken upload leaves nothing behind
            state.tmp_path.unlink(missing_ok=True)


def _sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


async def _flush(state: _ParseState) -> None:
    if state.pending:
        data, state.pending = bytes(state.pending), bytearray()
        await anyio.to_thread.run_sync(state.handle.write, data)


def _callbacks(state: _ParseState) -> dict[str, Callable[..., None]]:
    def on_part_begin() -> None:
        state.headers, state.name, state.filename = {}, "", None
        state.value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_field.lower()] = state.header_value
        state.header_field, state.header_value = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(state.headers.get(b"content-disposition", b""))
        state.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        state.in_file = state.name == "file" and not state.seen_file
        if state.in_file:
            state.seen_file = True
            # Display name only (basename, bounded); it never becomes a path.
            raw = (filename or b"upload.jsonl").decode("utf-8", "replace")
            state.filename = raw.replace("\\", "/").rsplit("/", 1)[-1][:255] or "upload.jsonl"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.in_file:
            state.size += end - start
            if state.size > state.max_bytes:
                state.too_big = True
                state.pending = bytearray()
            elif not state.too_big:
                state.pending += data[start:end]
        elif len(state.value) < MAX_FIELD_BYTES:
            state.value += data[start:end]

    def on_part_end() -> None:
        if not state.in_file and state.name:
            state.fields[state.name] = state.value[:MAX_FIELD_BYTES].decode("utf-8", "replace")
        state.in_file = False

    return {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
