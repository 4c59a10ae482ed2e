"""Request and result files into Arrow rows, a block of whole lines at a time.

Each file is read in blocks of whole lines. A helper thread reads and parses the next block
with Arrow's JSON reader (`arrow_rows.py`) while the caller works on the current one; a block
the fast reader refuses is read line by line (`line_rows.py`), which also names the file and
1-based line of anything unreadable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from batch_workflows.requests.lines import BOM
from batch_workflows.results import arrow_rows, line_rows

# Files are read, parsed and spread over the partitions in blocks of whole lines of this size.
BLOCK_BYTES = 8 * 1024 * 1024
_READ_OPTIONS = pj.ReadOptions(block_size=2 * 1024 * 1024)
# The JSON parser's short-lived buffers come from the system allocator, which hands large blocks
# back to the OS at once; Arrow's default pool (mimalloc) would keep them and inflate RSS.
_POOL = pa.system_memory_pool()


def request_batches(path: str, block_bytes: int = BLOCK_BYTES) -> Iterator[list[pa.RecordBatch]]:
    """The (custom_id, model) rows of a request file (`REQUEST_ROW_SCHEMA`), a block at a time.

    Raises InvalidInputError naming the file and line of an unreadable request line.
    """
    return _batches(path, block_bytes, arrow_rows.REQUEST_LINE_SCHEMA, arrow_rows.request_rows,
                    line_rows.request_rows)  # fmt: skip


def result_batches(path: str, block_bytes: int = BLOCK_BYTES) -> Iterator[list[pa.RecordBatch]]:
    """The rows of an output or error file (`RESULT_ROW_SCHEMA`), a block at a time.

    Raises CorruptResultError naming the file and line of an unreadable result line.
    """
    return _batches(path, block_bytes, arrow_rows.RESULT_LINE_SCHEMA, arrow_rows.result_rows,
                    line_rows.result_rows)  # fmt: skip


def _batches(
    path: str,
    block_bytes: int,
    line_schema: pa.Schema,
    fast: Callable[[pa.Table], list[pa.RecordBatch] | None],
    slow: Callable[[str, Iterator[tuple[int, bytes]]], pa.RecordBatch],
) -> Iterator[list[pa.RecordBatch]]:
    """Each block's rows: from the fast reader, or the slow one where the fast says None."""
    for first, block, table in _parsed(path, block_bytes, line_schema):
        batches = None if table is None else fast(table)
        del table
        if batches is None:
            batches = [slow(path, _lines(path, first, block))]
        yield batches


def _blocks(path: str, size: int) -> Iterator[tuple[int, memoryview]]:
    """(byte offset, block of whole lines) over a file; a UTF-8 BOM at the start is skipped.

    The part of a line cut by the end of a read is read again with the next block (a seek
    back), so blocks are never copied.
    """
    with open(path, "rb") as f:
        if f.read(len(BOM)) != BOM:
            f.seek(0)
        while True:
            offset = f.tell()
            chunk = f.read(size)
            if not chunk:
                return
            if len(chunk) < size:  # the end of the file
                yield offset, memoryview(chunk if chunk.endswith(b"\n") else chunk + b"\n")
                return
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on to its end
                chunk += f.readline()
                cut = len(chunk)
            else:
                f.seek(cut - len(chunk), 1)
            yield offset, memoryview(chunk)[:cut]


def _first_line_no(path: str, offset: int) -> int:
    """1-based number of the line that starts at byte `offset` (slow path only)."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(offset, BLOCK_BYTES))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count + 1


def _lines(path: str, offset: int, block: memoryview) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a block with their 1-based numbers."""
    first = _first_line_no(path, offset)
    for no, line in enumerate(bytes(block).split(b"\n"), first):
        if line.strip():
            yield no, line


def _parsed(path: str, size: int, schema: pa.Schema) -> Iterator[tuple[int, memoryview, Any]]:
    """(offset, block, Arrow table or None if Arrow refused the block) for each block.

    A helper thread reads and parses the next block (Arrow releases the GIL) while the caller
    works on the current one.
    """
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    def parse(block: memoryview) -> pa.Table | None:
        try:
            return pj.read_json(pa.BufferReader(block), _READ_OPTIONS, options, _POOL)
        except pa.ArrowException:
            return None  # not the plain shape: the line-by-line reader says what is wrong

    blocks = _blocks(path, size)

    def read_and_parse() -> tuple[int, memoryview, pa.Table | None] | None:
        item = next(blocks, None)
        return None if item is None else (*item, parse(item[1]))

    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(read_and_parse)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(read_and_parse)
            yield item
