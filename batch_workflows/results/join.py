"""Read batch output and error files and join them to the submitted requests by `custom_id`.

Every submitted `custom_id` gets exactly one row, with one of four statuses:

* ``succeeded`` — a response line with HTTP status 200;
* ``failed``    — a response line with another HTTP status (error code/message from its body);
* ``errored``   — a line with an ``error`` object and no response (e.g. ``batch_expired``);
* ``missing``   — no line at all in any output or error file.

Result lines come back in any order. When one ``custom_id`` has several lines (e.g. in both the
output and the error file) a success wins, then a failure, then an error; the extra lines are
counted as ``duplicates``. Lines for ids that were never submitted are counted as ``unexpected``
(with a sample of their ids), never dropped silently.

Memory stays flat however many lines there are: a grace hash join. Pass 1 streams the request
files and the result files in blocks (parsed by Arrow's JSON reader, with a line-by-line orjson
reader for blocks it refuses) and spreads the extracted columns over N temporary Arrow IPC
partitions by a hash of ``custom_id``; pass 2 joins one partition at a time with Arrow kernels
and appends the rows to the Parquet file as row groups. Row order: grouped by partition,
submission order inside a partition (with one partition, plain submission order).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from batch_workflows.errors import CorruptResultError, InvalidInputError, Problem
from batch_workflows.parquet import open_parquet
from batch_workflows.spill import HashSpill, partitions_for, release_memory

if TYPE_CHECKING:
    import pandas as pd

SUCCEEDED, FAILED, ERRORED, MISSING = "succeeded", "failed", "errored", "missing"
STATUSES = (SUCCEEDED, FAILED, ERRORED, MISSING)

# Input bytes (requests + results) per partition: the Arrow columns of one partition are smaller
# than this, so pass 2 holds at most a few tens of MB whatever the total (up to spill.MAX_PARTITIONS).
PARTITION_BYTES = 32 * 1024 * 1024
# Files are read, parsed and spread over the partitions in blocks of whole lines of this size.
BLOCK_BYTES = 8 * 1024 * 1024
ROW_GROUP_ROWS = 65_536
UNEXPECTED_SAMPLE = 20

# The Parquet schema (documented in the contract). `embedding` holds the vector when the
# response holds exactly one; `embeddings` holds all of them (in `index` order) when it holds more.
SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("status", pa.string()),
        ("status_code", pa.int32()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("model", pa.string()),
        ("content", pa.string()),
        ("finish_reason", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("embeddings", pa.list_(pa.list_(pa.float32()))),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
    ]
)
# Temporary partition schema: the Parquet columns, with `rank` (0 succeeded, 1 failed,
# 2 errored; also the preference among duplicates) in place of `status`.
_KEYS = ("custom_id", "status")
_RESULT_SCHEMA = pa.schema(
    [("custom_id", pa.string()), ("rank", pa.int8())] + [f for f in SCHEMA if f.name not in _KEYS]
)
_REQUEST_SCHEMA = pa.schema([("custom_id", pa.string()), ("model", pa.string())])
_STATUS_BY_RANK = pa.array([SUCCEEDED, FAILED, ERRORED])

PathLike = str | os.PathLike[str]


@dataclass
class ResultSet:
    """Summary of a join, plus access to its rows (the Parquet file, or in memory when small)."""

    path: str | None
    counts: dict[str, int]
    error_breakdown: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    unexpected: int
    models: dict[str, dict[str, int]]
    duplicates: int = 0
    unexpected_sample: list[str] = field(default_factory=list)
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        """Number of submitted requests (one row each)."""
        return sum(self.counts.values())

    @property
    def all_succeeded(self) -> bool:
        return self.counts.get(SUCCEEDED, 0) == self.total

    def to_arrow(self) -> pa.Table:
        """All rows as an Arrow table (reads the Parquet file when the rows are on disk)."""
        if self.table is not None:
            return self.table
        if self.path is None:
            return SCHEMA.empty_table()
        return pq.read_table(self.path)

    def to_dataframe(self) -> pd.DataFrame:
        """All rows as a pandas DataFrame: meant for small results."""
        return self.to_arrow().to_pandas()

    def iter_unfinished_ids(self) -> Iterator[str]:
        """custom_ids whose status is not `succeeded` (to resubmit), streamed from the rows."""
        for batch in self._iter_batches(["custom_id", "status"]):
            keep = pc.not_equal(batch.column("status"), SUCCEEDED)
            yield from batch.column("custom_id").filter(keep).to_pylist()

    def _iter_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.select(columns).to_batches()
        elif self.path is not None:
            yield from open_parquet(self.path).iter_batches(columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """Plain summary (JSON-friendly), e.g. for asset metadata."""
        return {
            "path": self.path,
            "total": self.total,
            "counts": dict(self.counts),
            "error_breakdown": dict(self.error_breakdown),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "unexpected": self.unexpected,
            "unexpected_sample": list(self.unexpected_sample),
            "duplicates": self.duplicates,
            "models": {m: dict(u) for m, u in self.models.items()},
        }

    @classmethod
    def from_parquet(cls, path: PathLike) -> ResultSet:
        """Rebuild the summary of a results file written by `join_results` (streamed)."""
        acc = _Summary()
        pf = open_parquet(path)
        columns = ["status", "status_code", "error_code", "model"] + list(_TOKENS)
        for batch in pf.iter_batches(columns=columns):
            acc.add(pa.Table.from_batches([batch]))
        return acc.result(str(path), unexpected=0, duplicates=0, sample=[])


_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def join_results(
    request_files: PathLike | Iterable[PathLike],
    output_files: PathLike | Iterable[PathLike],
    error_files: PathLike | Iterable[PathLike] = (),
    out_path: PathLike | None = None,
    *,
    partitions: int | None = None,
    work_dir: PathLike | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
    block_bytes: int = BLOCK_BYTES,
) -> ResultSet:
    """Join result files to the submitted requests; one row per submitted `custom_id`.

    With `out_path` the rows are written to that Parquet file (row groups, atomically renamed
    into place) and memory stays flat; without it they are kept in memory (`ResultSet.table`),
    which suits small results. `partitions` overrides the number of hash partitions (default:
    one per 32 MB of input files); `block_bytes` the size of the blocks files are read in;
    neither changes the rows, only their order and the memory used. Temporary files go to
    `work_dir`, else next to `out_path`, else the system temp folder, and are removed afterwards.

    Raises `InvalidInputError` for an unreadable request line and `CorruptResultError` for an
    unreadable result line, both naming the file and the 1-based line.
    """
    requests = _paths(request_files)
    results = _paths(output_files) + _paths(error_files)
    if partitions is None:
        size = sum(os.path.getsize(p) for p in requests + results)
        partitions = partitions_for(size, PARTITION_BYTES)
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if work_dir is None and out_path is not None:
        work_dir = Path(out_path).resolve().parent
    block_bytes = block_bytes or BLOCK_BYTES
    with HashSpill.temporary(partitions, work_dir, ".join-") as spill:
        for path in requests:
            _spill_requests(path, spill, block_bytes)
        for path in results:
            _spill_results(path, spill, block_bytes)
        spill.close()
        return _join_partitions(spill, out_path, row_group_rows)


def _paths(value: PathLike | Iterable[PathLike] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


# ---------------------------------------------------------------- pass 1: spill to partitions
#
# Each file is read in blocks of whole lines. A block is parsed by Arrow's JSON reader (C++,
# multi-threaded) against an explicit schema of the fields we keep, and the columns are
# extracted with Arrow kernels. A block that does not fit that plain shape (a corrupt line, a
# base64 embedding, an unusual type, embeddings out of index order, ...) is parsed line by line
# with orjson instead, which also names the file and line of anything unreadable. Rows then go
# to their partition by a hash of custom_id computed with numpy over the Arrow buffers.

_USAGE = pa.struct(
    [("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("total_tokens", pa.int64())]
)
_ERROR = pa.struct([("code", pa.string()), ("message", pa.string()), ("type", pa.string())])
_CHOICE = pa.struct(
    [
        ("message", pa.struct([("content", pa.string())])),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
    ]
)
_DATUM = pa.struct([("index", pa.int64()), ("embedding", pa.list_(pa.float32()))])
_BODY = pa.struct(
    [
        ("model", pa.string()),
        ("usage", _USAGE),
        ("error", _ERROR),
        ("choices", pa.list_(_CHOICE)),
        ("data", pa.list_(_DATUM)),
    ]
)
_RESULT_JSON = pa.schema(
    [
        ("custom_id", pa.string()),
        ("response", pa.struct([("status_code", pa.int64()), ("body", _BODY)])),
        ("error", _ERROR),
    ]
)
_REQUEST_JSON = pa.schema(
    [("custom_id", pa.string()), ("body", pa.struct([("model", pa.string())]))]
)
_BOM = b"\xef\xbb\xbf"
_READ_OPTIONS = pj.ReadOptions(block_size=2 * 1024 * 1024)
# The JSON parser's short-lived buffers come from the system allocator, which hands large blocks
# back to the OS at once; Arrow's default pool (mimalloc) would keep them and inflate RSS.
_POOL = pa.system_memory_pool()


def _blocks(path: str, size: int) -> Iterator[tuple[int, memoryview]]:
    """(byte offset, block of whole lines) over a file; a UTF-8 BOM at the start is skipped.

    The part of a line cut by the end of a read is read again with the next block (a seek
    back), so blocks are never copied.
    """
    with open(path, "rb") as f:
        if f.read(len(_BOM)) != _BOM:
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


def _spill_requests(path: str, spill: HashSpill, block_bytes: int) -> None:
    """(custom_id, model) of every request line into the request partitions.

    The model is kept only to label requests that got no answer.
    """
    for first, block, table in _parsed(path, block_bytes, _REQUEST_JSON):
        batches = None
        if table is not None:
            ids = table.column("custom_id")
            if not ids.null_count and not pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
                model = pc.struct_field(table.column("body"), "model")
                batches = pa.Table.from_arrays([ids, model], schema=_REQUEST_SCHEMA).to_batches()
        if batches is None:
            batches = [_to_batch([_request_row(path, no, line) for no, line in _lines(path, first, block)],
                                 _REQUEST_SCHEMA, path)]  # fmt: skip
        del table
        spill.add("req", batches)


def _request_row(path: str, no: int, line: bytes) -> tuple[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise InvalidInputError([Problem(path, no, None, f"not valid JSON: {err}")]) from None
    if not isinstance(obj, dict):
        raise InvalidInputError([Problem(path, no, None, "not a JSON object")])
    cid = obj.get("custom_id")
    if type(cid) is not str or not cid:
        raise InvalidInputError([Problem(path, no, "custom_id", "missing or not a non-empty string")])
    body = obj.get("body")
    return cid, body.get("model") if isinstance(body, dict) else None


def _spill_results(path: str, spill: HashSpill, block_bytes: int) -> None:
    """Every result line of one file into the result partitions."""
    for first, block, table in _parsed(path, block_bytes, _RESULT_JSON):
        batches = None
        if table is not None:
            try:  # one batch per block: the kernels cost per call more than per row here
                whole = table.combine_chunks().to_batches()
                batches = [_result_columns(b) for b in whole]
            except pa.ArrowException:  # e.g. an empty `choices` list
                batches = None
            if batches is not None and any(b is None for b in batches):
                batches = None
        if batches is None:
            batches = [_to_batch([_result_row(path, no, line) for no, line in _lines(path, first, block)],
                                 _RESULT_SCHEMA, path)]  # fmt: skip
        del table
        spill.add("res", batches)


def _field(array: pa.Array, *names: str) -> pa.Array:
    for name in names:
        array = pc.struct_field(array, name)
    return array


def _result_columns(batch: pa.RecordBatch) -> pa.RecordBatch | None:
    """Arrow-parsed result lines -> `_RESULT_SCHEMA`; None when a line needs the slow reader."""
    ids, response, error = batch.column(0), batch.column(1), batch.column(2)
    if ids.null_count or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
        return None
    answered = pc.is_valid(response)
    code = _field(response, "status_code")
    if pc.any(pc.and_(answered, pc.is_null(code))).as_py():
        return None  # response without a status code
    if pc.any(pc.and_(pc.invert(answered), pc.is_null(error))).as_py():
        return None  # neither response nor error
    ok = pc.fill_null(pc.equal(code, 200), False)
    failed = pc.and_(answered, pc.invert(ok))
    rank = pc.cast(pc.if_else(answered, pc.if_else(ok, 0, 1), 2), pa.int8())
    body = _field(response, "body")
    body_error = _field(body, "error")
    null_str = pa.nulls(len(ids), pa.string())
    error_code = pc.if_else(
        failed,
        pc.coalesce(_field(body_error, "code"), _field(body_error, "type"), _field(error, "code")),
        pc.if_else(answered, null_str, _field(error, "code")),
    )
    error_message = pc.if_else(
        failed,
        pc.coalesce(_field(body_error, "message"), _field(error, "message")),
        pc.if_else(answered, null_str, _field(error, "message")),
    )
    choices = _field(body, "choices")
    if choices.null_count < len(choices):
        choice = pc.list_element(choices, 0)  # raises on an empty list: slow reader then
        content = pc.coalesce(_field(choice, "message", "content"), _field(choice, "text"))
        content = pc.if_else(ok, content, null_str)
        finish = pc.if_else(ok, _field(choice, "finish_reason"), null_str)
    else:
        content = finish = null_str
    embedding, embeddings = _embedding_columns(_field(body, "data"), ok)
    if embedding is None:
        return None
    usage = _field(body, "usage")
    has_usage = pc.and_(ok, pc.is_valid(usage))
    null_int = pa.nulls(len(ids), pa.int64())
    prompt = pc.if_else(has_usage, _field(usage, "prompt_tokens"), null_int)
    # embeddings report no completion tokens: zero produced
    completion = pc.if_else(has_usage, pc.fill_null(_field(usage, "completion_tokens"), 0), null_int)
    total = pc.if_else(has_usage, _field(usage, "total_tokens"), null_int)
    arrays = [
        ids, rank, pc.cast(code, pa.int32()), error_code, error_message, _field(body, "model"),
        content, finish, embedding, embeddings, prompt, completion, total,
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(arrays, schema=_RESULT_SCHEMA)


def _embedding_columns(data: pa.Array, ok: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
    """(`embedding`, `embeddings`) from body.data; (None, None) if vectors are out of index order."""
    n = len(data)
    none = pa.nulls(n, SCHEMA.field("embedding").type), pa.nulls(n, SCHEMA.field("embeddings").type)
    if data.null_count == n:
        return none
    data = pc.if_else(ok, data, pa.nulls(n, data.type))
    counts = pc.fill_null(pc.list_value_length(data), 0)
    single = pc.equal(counts, 1)
    embedding = none[0]
    if pc.any(single).as_py():
        first = pc.list_element(pc.if_else(single, data, pa.nulls(n, data.type)), 0)
        embedding = pc.struct_field(first, "embedding")
    many = pc.greater(counts, 1)
    embeddings = none[1]
    if pc.any(many).as_py():
        data = pc.if_else(many, data, pa.nulls(n, data.type))
        items = pc.list_flatten(data)
        parents = pc.list_parent_indices(data).to_numpy()
        sizes = np.asarray(pc.fill_null(pc.list_value_length(data), 0))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        position = np.arange(len(items)) - starts[parents]
        index = pc.fill_null(pc.struct_field(items, "index"), -1).to_numpy()
        if not np.array_equal(index, position):
            return None, None
        embeddings = pa.ListArray.from_arrays(
            pa.array(starts.astype(np.int32)), pc.struct_field(items, "embedding"),
            mask=pc.invert(many),
        )  # fmt: skip
    return embedding, embeddings


def _to_batch(rows: list[tuple], schema: pa.Schema, source: str) -> pa.RecordBatch:
    """Rows from the line-by-line readers -> a record batch (odd JSON types coerced)."""
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    arrays = []
    for values, f in zip(zip(*rows, strict=True), schema, strict=True):
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays.append(_coerce(values, f, rows, source))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _coerce(values: tuple, f: pa.Field, rows: list[tuple], source: str) -> pa.Array:
    if pa.types.is_string(f.type):
        fixed = [v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values]
    elif pa.types.is_integer(f.type):
        fixed = [v if type(v) is int else _int_or_none(v) for v in values]
    else:  # vectors: a non-number inside is a corrupt line; find which one
        for value, row in zip(values, rows, strict=True):
            try:
                pa.array([value], type=f.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                no = _find_line(source, row[0])
                raise CorruptResultError(
                    Problem(source, no, "response.body.data.embedding", "not a list of numbers")
                ) from None
        fixed = list(values)
    return pa.array(fixed, type=f.type)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _find_line(path: str, custom_id: str) -> int:
    """1-based line of a custom_id in a result file (slow path for error messages only)."""
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if custom_id.encode() in line:
                try:
                    if orjson.loads(line.removeprefix(_BOM)).get("custom_id") == custom_id:
                        return no
                except (orjson.JSONDecodeError, AttributeError):
                    continue
    return 0


def _result_row(path: str, no: int, line: bytes) -> tuple:
    try:
        return _parse_result(orjson.loads(line))
    except Exception as exc:  # any failure of the parser means a corrupt line: explain it
        raise CorruptResultError(_result_problem(path, no, line, exc)) from None


def _result_problem(path: str, no: int, line: bytes, exc: Exception) -> Problem:
    """The precise reason a result line could not be read."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return Problem(path, no, None, f"not valid JSON: {err}")
    if not isinstance(obj, dict):
        return Problem(path, no, None, "not a JSON object")
    if not isinstance(obj.get("custom_id"), str) or not obj["custom_id"]:
        return Problem(path, no, "custom_id", "missing or not a non-empty string")
    response, error = obj.get("response"), obj.get("error")
    if response is None and error is None:
        return Problem(path, no, None, "neither `response` nor `error` is set")
    if response is not None:
        if not isinstance(response, dict):
            return Problem(path, no, "response", "not an object")
        if type(response.get("status_code")) is not int:
            return Problem(path, no, "response.status_code", "missing or not an integer")
        return Problem(path, no, "response.body", f"unexpected shape ({type(exc).__name__}: {exc})")
    if not isinstance(error, dict):
        return Problem(path, no, "error", "not an object")
    return Problem(path, no, "error", f"unexpected shape ({type(exc).__name__}: {exc})")


def _parse_result(obj: dict) -> tuple:
    """One result line (parsed) -> a row of `_RESULT_SCHEMA`; same rules as `_result_columns`."""
    cid = obj["custom_id"]
    if type(cid) is not str or not cid:
        raise ValueError("custom_id is not a non-empty string")
    response = obj.get("response")
    top = obj.get("error")
    if response is None:
        return (cid, 2, None, top.get("code"), top.get("message"),
                None, None, None, None, None, None, None, None)  # fmt: skip
    code = response["status_code"]
    if type(code) is not int:
        raise ValueError("status_code is not an integer")
    body = response.get("body")
    if body is None:
        body = {}
    if code != 200:
        err = body.get("error") or {}
        if isinstance(err, str):  # some servers send the message alone
            err = {"message": err}
        ecode = _first(err.get("code"), err.get("type"))
        emsg = err.get("message")
        if isinstance(top, dict):  # some providers put the reason at the top level
            ecode, emsg = _first(ecode, top.get("code")), _first(emsg, top.get("message"))
        return (cid, 1, code, ecode, emsg, body.get("model"),
                None, None, None, None, None, None, None)  # fmt: skip
    usage = body.get("usage")
    if usage is not None:
        prompt, total = usage.get("prompt_tokens"), usage.get("total_tokens")
        completion = _first(usage.get("completion_tokens"), 0)  # embeddings: zero produced
    else:
        prompt = completion = total = None
    content = finish = embedding = embeddings = None
    choices = body.get("choices")
    if choices:
        choice = choices[0]
        message = choice.get("message")
        content = _first(message.get("content") if message else None, choice.get("text"))
        finish = choice.get("finish_reason")
    data = body.get("data")
    if data:
        if len(data) == 1:
            embedding = _vector(data[0]["embedding"])
        else:
            data = sorted(data, key=lambda d: d.get("index") or 0)
            embeddings = [_vector(d["embedding"]) for d in data]
    return (cid, 0, 200, None, None, body.get("model"), content, finish,
            embedding, embeddings, prompt, completion, total)  # fmt: skip


def _first(*values: Any) -> Any:
    """The first value that is not None (JSON null)."""
    for value in values:
        if value is not None:
            return value
    return None


def _vector(value: Any) -> Any:
    """A float list as sent, or a base64 `encoding_format` string decoded to float32."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return value


# ---------------------------------------------------------------- pass 2: join partitions


def _join_partitions(spill: HashSpill, out_path: PathLike | None, row_group_rows: int) -> ResultSet:
    acc = _Summary()
    unexpected = duplicates = 0
    sample: list[str] = []
    tables: list[pa.Table] = []
    writer = tmp_out = None
    if out_path is not None:
        tmp_out = f"{os.fspath(out_path)}.partial"
        writer = pq.ParquetWriter(
            tmp_out,
            SCHEMA,
            use_dictionary=["status", "error_code", "model", "finish_reason"],
        )
    # Parquet encoding releases the GIL: one partition is written while the next is joined.
    pool = ThreadPoolExecutor(max_workers=1)
    writing = None
    try:
        for i in range(spill.n):
            requests = spill.read("req", i, _REQUEST_SCHEMA)
            results = spill.read("res", i, _RESULT_SCHEMA)
            joined, extra, dups, ids = _join_one(requests, results)
            del requests, results
            unexpected += extra
            duplicates += dups
            sample.extend(ids[: UNEXPECTED_SAMPLE - len(sample)])
            if joined.num_rows:
                acc.add(joined)
                if writer is not None:
                    if writing is not None:
                        writing.result()
                    writing = pool.submit(writer.write_table, joined, row_group_rows)
                else:
                    tables.append(joined)
            del joined
            release_memory()
        if writing is not None:
            writing.result()
            writing = None
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp_out, out_path)
    finally:
        if writing is not None:
            writing.exception()  # let it finish before the file is closed
        pool.shutdown()
        if writer is not None:
            writer.close()
        if tmp_out is not None and os.path.exists(tmp_out):
            os.unlink(tmp_out)
    path = os.fspath(out_path) if out_path is not None else None
    result = acc.result(path, unexpected, duplicates, sample)
    if out_path is None:
        result.table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return result


def _join_one(requests: pa.Table, results: pa.Table) -> tuple[pa.Table, int, int, list[str]]:
    """Join one partition: (rows in SCHEMA, unexpected lines, duplicate lines, unexpected sample)."""
    all_req_ids = requests.column("custom_id").combine_chunks()
    req_ids = pc.unique(all_req_ids)  # first-seen order
    res_ids = results.column("custom_id").combine_chunks()
    submitted = pc.is_in(res_ids, value_set=req_ids)
    matched_lines = pc.sum(submitted).as_py() or 0
    index = pc.index_in(req_ids, value_set=res_ids)
    found = len(index) - index.null_count
    if found != matched_lines:
        # Several lines for some submitted ids: put the best first (index_in takes the first).
        results = results.sort_by([("custom_id", "ascending"), ("rank", "ascending")])
        res_ids = results.column("custom_id").combine_chunks()
        submitted = pc.is_in(res_ids, value_set=req_ids)
        index = pc.index_in(req_ids, value_set=res_ids)
    unexpected = len(res_ids) - matched_lines
    sample: list[str] = []
    if unexpected:
        sample = res_ids.filter(pc.invert(submitted)).slice(0, UNEXPECTED_SAMPLE).to_pylist()
    # Missing rows take their model from the request body.
    if len(req_ids) == len(all_req_ids):
        request_models = requests.column("model")
    else:
        request_models = requests.column("model").take(pc.index_in(req_ids, value_set=all_req_ids))
    columns = []
    for f in SCHEMA:
        if f.name == "custom_id":
            col = req_ids
        elif f.name == "status":
            rank = results.column("rank").take(index)
            col = pc.fill_null(pc.take(_STATUS_BY_RANK, rank), MISSING)
        elif f.name == "model":
            col = pc.coalesce(results.column("model").take(index), request_models)
        else:  # column by column: Table.take is much slower here
            col = results.column(f.name).take(index)
        columns.append(col)
    joined = pa.Table.from_arrays(columns, schema=SCHEMA)
    return joined, unexpected, matched_lines - found, sample


class _Summary:
    """Counts, error breakdown and usage per model, accumulated over joined tables."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.errors: dict[str, int] = {}
        self.models: dict[str, dict[str, int]] = {}

    def add(self, table: pa.Table) -> None:
        keys = ["status", "status_code", "error_code"]
        for row in table.group_by(keys).aggregate([("status", "count")]).to_pylist():
            status, n = row["status"], row["status_count"]
            self.counts[status] = self.counts.get(status, 0) + n
            if status in (FAILED, ERRORED):
                key = row["error_code"] or (
                    f"http_{row['status_code']}" if status == FAILED else "unknown"
                )
                self.errors[key] = self.errors.get(key, 0) + n
        used = table.filter(pc.is_valid(table.column("total_tokens")))
        if used.num_rows:
            aggs = [("total_tokens", "count")] + [(t, "sum") for t in _TOKENS]
            for row in used.group_by("model").aggregate(aggs).to_pylist():
                name = row["model"] or "unknown"
                usage = self.models.setdefault(name, dict.fromkeys(("requests", *_TOKENS), 0))
                usage["requests"] += row["total_tokens_count"]
                for t in _TOKENS:
                    usage[t] += row[f"{t}_sum"] or 0

    def result(
        self, path: str | None, unexpected: int, duplicates: int, sample: list[str]
    ) -> ResultSet:
        totals = {t: sum(u[t] for u in self.models.values()) for t in _TOKENS}
        errors = dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0])))
        return ResultSet(
            path=path,
            counts=self.counts,
            error_breakdown=errors,
            prompt_tokens=totals["prompt_tokens"],
            completion_tokens=totals["completion_tokens"],
            total_tokens=totals["total_tokens"],
            unexpected=unexpected,
            models=dict(sorted(self.models.items())),
            duplicates=duplicates,
            unexpected_sample=sample,
        )
