"""JSONL bytes into lines: chunked reading, a leading BOM dropped, over-long lines never held.

Line numbers are 1-based everywhere (they are what a problem report shows).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from batch_workflows.errors import InvalidInputError, Problem

BOM = b"\xef\xbb\xbf"
READ_CHUNK_BYTES = 1 << 16  # bytes read per call when streaming a file


class OverlongLine(bytes):
    """Stands in for a line too long to hold in memory; `size` is its real length."""

    size: int


def _overlong(size: int) -> OverlongLine:
    line = OverlongLine()
    line.size = size
    return line


def iter_line_batches(f: IO[bytes], hard_limit: int) -> Iterator[list[bytes]]:
    """Lines of a binary stream, in lists, without terminators; BOM at the start dropped.

    Reads in small chunks (the lines of one chunk stay in CPU cache while they are checked).
    A line longer than `hard_limit` is never held whole: it comes out as an `OverlongLine`
    carrying only its length, so a file with no newlines cannot exhaust memory. An
    `OverlongLine` is only ever the first line of a list (the validator's stream check relies
    on that).
    """
    parts: list[bytes] = []  # pieces of the line that the last chunk left unfinished
    partial = 0
    skipping = -1  # >= 0 while discarding an overlong line: bytes seen so far
    first = True
    while True:
        chunk = f.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        if first:
            first = False
            if chunk.startswith(BOM):
                chunk = chunk[3:]
        if skipping >= 0:
            cut = chunk.find(b"\n")
            if cut < 0:
                skipping += len(chunk)
                continue
            lines = chunk[cut + 1 :].split(b"\n")
            lines.insert(0, _overlong(skipping + cut))
            skipping = -1
        else:
            lines = chunk.split(b"\n")
            if len(lines) == 1:  # no newline in this chunk: all of it continues the line
                parts.append(chunk)
                partial += len(chunk)
                if partial > hard_limit:
                    skipping, parts, partial = partial, [], 0
                continue
            if parts:
                parts.append(lines[0])
                lines[0] = b"".join(parts)
        tail = lines.pop()
        parts = [tail] if tail else []
        partial = len(tail)
        yield lines
    if skipping >= 0:
        yield [_overlong(skipping)]
    elif parts:
        yield [b"".join(parts)]


def iter_file_lines(path: str | os.PathLike[str], hard_limit: int) -> Iterator[bytes]:
    """Every line of a file, in order (see `iter_line_batches`)."""
    with open(path, "rb") as f:
        for batch in iter_line_batches(f, hard_limit):
            yield from batch


def file_lines(path: str | os.PathLike[str], hard_limit: int) -> Callable[[], Iterator[bytes]]:
    """A function that reads the file's lines again each time it is called."""
    return lambda: iter_file_lines(path, hard_limit)


def iter_requests(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read a requests/shard file back, one dict per line (BOM and CRLF tolerated).

    Blank lines are skipped; a line that is not a JSON object raises InvalidInputError.
    """
    source = os.fspath(path)
    for line_no, raw in enumerate(iter_file_lines(source, 1 << 30), 1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(
                [Problem(source, line_no, None, f"not valid JSON: {exc}", "invalid_json")]
            ) from None
        if type(obj) is not dict:
            raise InvalidInputError(
                [Problem(source, line_no, None, "not a JSON object", "not_object")]
            )
        yield obj
