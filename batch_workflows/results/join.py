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

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_workflows.results.parse import BLOCK_BYTES, request_batches, result_batches
from batch_workflows.results.result_set import ResultCounter, ResultSet
from batch_workflows.results.schema import (
    MISSING,
    REQUEST_ROW_SCHEMA,
    RESULT_ROW_SCHEMA,
    SCHEMA,
    STATUS_BY_RANK,
)
from batch_workflows.spill import HashSpill, partitions_for, release_memory

# Input bytes (requests + results) per partition: the Arrow columns of one partition are smaller
# than this, so pass 2 holds at most a few tens of MB whatever the total (up to spill.MAX_PARTITIONS).
PARTITION_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 65_536
UNEXPECTED_SAMPLE = 20

PathLike = str | os.PathLike[str]


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
        for path in requests:  # pass 1: spread the rows over the partitions
            for batches in request_batches(path, block_bytes):
                spill.add("req", batches)
        for path in results:
            for batches in result_batches(path, block_bytes):
                spill.add("res", batches)
        spill.close()
        return _join_partitions(spill, out_path, row_group_rows)


def _paths(value: PathLike | Iterable[PathLike] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


# ---------------------------------------------------------------- pass 2: join partitions


def _join_partitions(spill: HashSpill, out_path: PathLike | None, row_group_rows: int) -> ResultSet:
    counter = ResultCounter()
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
            requests = spill.read("req", i, REQUEST_ROW_SCHEMA)
            results = spill.read("res", i, RESULT_ROW_SCHEMA)
            joined, extra, dups, ids = _join_one(requests, results)
            del requests, results
            unexpected += extra
            duplicates += dups
            sample.extend(ids[: UNEXPECTED_SAMPLE - len(sample)])
            if joined.num_rows:
                counter.add(joined)
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
    result = counter.result_set(path, unexpected, duplicates, sample)
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
            col = pc.fill_null(pc.take(STATUS_BY_RANK, rank), MISSING)
        elif f.name == "model":
            col = pc.coalesce(results.column("model").take(index), request_models)
        else:  # column by column: Table.take is much slower here
            col = results.column(f.name).take(index)
        columns.append(col)
    joined = pa.Table.from_arrays(columns, schema=SCHEMA)
    return joined, unexpected, matched_lines - found, sample
