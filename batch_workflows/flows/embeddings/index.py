"""Joined results + chunk table → points in Qdrant: the embeddings flow's output step.

Points: id = uuid5(document id, chunk index), so a re-run overwrites instead of duplicating;
payload = text, document_id, chunk_index, source, partition, model. A failed request's chunks
are counted, not indexed; the partition's points that its chunk table no longer holds are
deleted as stale. A partition too large to hold in memory is indexed in parts (split by the
hash of the custom_id) and its result rows are always streamed: memory stays flat.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_workflows.errors import BatchError
from batch_workflows.flows.embeddings.requests import CHUNK_SCHEMA, normalized, read_chunk_table
from batch_workflows.flows.embeddings.vectors import VectorIndex
from batch_workflows.parquet import open_parquet
from batch_workflows.spill import HashSpill, partitions_for, release_memory

FAILED_SAMPLE = 10  # failed custom_ids named in the report


@dataclass
class IndexReport:
    """What one indexing pass did."""

    partition: str
    chunks: int = 0  # planned (rows of the chunk table)
    upserted: int = 0  # points written (new or changed)
    unchanged: int = 0  # points already stored exactly so: not rewritten
    failed_requests: int = 0
    failed_chunks: int = 0
    stale_deleted: int = 0
    dimension: int | None = None
    created_collection: bool = False
    seconds: float = 0.0
    failed_sample: list[str] = field(default_factory=list)

    def failed(self, custom_id: str, chunks: int) -> None:
        """Count a request that brought no vectors, and its chunks."""
        self.failed_requests += 1
        self.failed_chunks += chunks
        if len(self.failed_sample) < FAILED_SAMPLE:
            self.failed_sample.append(custom_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _vectors_of_batch(batch: pa.RecordBatch) -> Iterator[tuple[str, str, Any]]:
    """(custom_id, status, float32 matrix or None) per result row, without Python floats."""
    import numpy as np

    ids = batch.column("custom_id").to_pylist()
    statuses = batch.column("status").to_pylist()
    single = batch.column("embedding")
    multi = batch.column("embeddings")
    for i, (cid, status) in enumerate(zip(ids, statuses, strict=True)):
        matrix = None
        if multi[i].is_valid:
            rows = multi[i].values  # ListArray of float32 lists
            flat = rows.flatten().to_numpy(zero_copy_only=False)
            matrix = flat.reshape(len(rows), -1) if len(rows) else None
        elif single[i].is_valid:
            matrix = np.asarray(single[i].values.to_numpy(zero_copy_only=False)).reshape(1, -1)
        yield cid, status, matrix


# Chunk-table bytes (uncompressed) indexed at a time: a larger partition is split by the hash of
# the custom_id, chunk rows and result rows alike, and indexed one part at a time. Result rows
# are always streamed, a few at a time.
INDEX_PART_BYTES = 32 * 1024 * 1024
_RESULT_COLUMNS = ["custom_id", "status", "embedding", "embeddings"]
_RESULT_ROWS = 64  # result rows per batch read: each can hold thousands of vectors


def _parts(
    chunk_table: str | Path, results_path: str | Path, part_bytes: int
) -> Iterator[tuple[pa.Table, Iterator[pa.RecordBatch]]]:
    """(chunk rows, their result rows) of the partition, a part at a time; every request's
    chunk rows and result row fall in the same part, its chunk rows in their table order."""
    chunks, results = open_parquet(chunk_table), open_parquet(results_path)
    meta = chunks.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    parts = partitions_for(size, part_bytes)
    if parts <= 1:
        yield read_chunk_table(chunk_table), results.iter_batches(_RESULT_ROWS,
                                                                  columns=_RESULT_COLUMNS)
        return
    with HashSpill.temporary(parts, Path(results_path).resolve().parent, ".index-") as spill:
        for batch in chunks.iter_batches(batch_size=8192):
            spill.add("req", normalized(batch).to_batches())
        for batch in results.iter_batches(_RESULT_ROWS, columns=_RESULT_COLUMNS):
            spill.add("res", [batch])
        spill.close()
        for i in range(parts):
            table = spill.read("req", i, CHUNK_SCHEMA)
            yield table, spill.stream("res", i)
            del table
            release_memory()


_ID_SCHEMA = pa.schema([("point_id", pa.string())])


def _delete_stale(
    index: VectorIndex, partition: str, chunk_table: str | Path, results_path: str | Path,
    part_bytes: int,
) -> int:
    """Delete the partition's points whose id the chunk table does not hold. Many ids are
    matched a hash part at a time: the table's ids and the stored ones are spilled first."""
    table = open_parquet(chunk_table)
    meta, column = table.metadata, table.schema_arrow.get_field_index("point_id")
    size = sum(meta.row_group(i).column(column).total_uncompressed_size
               for i in range(meta.num_row_groups))
    parts = partitions_for(size, part_bytes)
    if parts <= 1:
        return index.delete_stale(partition, pq.read_table(str(chunk_table),
                                                           columns=["point_id"]).column(0))
    with HashSpill.temporary(parts, Path(results_path).resolve().parent, ".stale-") as spill:
        for batch in table.iter_batches(65_536, columns=["point_id"]):
            spill.add("req", [batch])

        def spill_ids(ids: list[str]) -> None:
            spill.add("res", [pa.record_batch([pa.array(ids, pa.string())], schema=_ID_SCHEMA)])

        page: list[str] = []
        for pid in index.partition_ids(partition):  # every stored id, before any is deleted
            page.append(pid)
            if len(page) >= 65_536:
                spill_ids(page)
                page = []
        spill_ids(page)
        spill.close()
        deleted = 0
        for i in range(parts):
            keep = spill.read("req", i, _ID_SCHEMA).column(0)
            for batch in spill.stream("res", i):
                ids = batch.column(0).to_pylist()
                for start in range(0, len(ids), 1024):
                    deleted += index.delete_unkept(ids[start : start + 1024], keep)
        return deleted


class _PointWriter:
    """Buffers the points of embedded chunks and upserts them `batch_size` at a time."""

    def __init__(self, index: VectorIndex, report: IndexReport, partition: str, model: str,
                 batch_size: int, skip_unchanged: bool):
        self.index, self.report = index, report
        self.partition, self.model = partition, model
        self.batch_size, self.skip_unchanged = batch_size, skip_unchanged
        self.ids: list[str] = []
        self.vectors: list[Any] = []
        self.payloads: list[dict[str, Any]] = []

    def add(self, chunks: pa.Table, matrix: Any) -> None:
        """One request's chunk rows (in input order) and its vectors, one row each."""
        import numpy as np

        report = self.report
        if report.dimension is None:
            report.dimension = int(matrix.shape[1])
            report.created_collection = self.index.ensure_collection(report.dimension)
        self.ids.extend(chunks.column("point_id").to_pylist())
        for text, doc, idx, source in zip(
            chunks.column("text").to_pylist(),
            chunks.column("document_id").to_pylist(),
            chunks.column("chunk_index").to_pylist(),
            chunks.column("source").to_pylist(),
            strict=True,
        ):
            self.payloads.append({"text": text, "document_id": doc, "chunk_index": idx,
                                  "source": source, "partition": self.partition,
                                  "model": self.model})
        self.vectors.append(matrix.astype(np.float32, copy=False))
        if len(self.ids) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        import numpy as np

        if not self.ids:
            return
        vectors = np.concatenate(self.vectors)
        if self.skip_unchanged:
            written, same = self.index.upsert_changed(self.ids, vectors, self.payloads)
        else:
            written, same = self.index.upsert(self.ids, vectors, self.payloads), 0
        self.report.upserted += written
        self.report.unchanged += same
        self.ids, self.vectors, self.payloads = [], [], []


def _request_rows(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Per request (not per chunk): its first row and number of rows in `table`. The chunks'
    columns stay in Arrow and are read a request's slice at a time."""
    where: dict[str, tuple[int, int]] = {}
    row = 0
    for batch in table.select(["custom_id"]).to_batches(max_chunksize=65_536):
        for cid in batch.column(0).to_pylist():
            first, n = where.get(cid, (row, 0))
            where[cid] = (first, n + 1)
            row += 1
    return where


def _index_part(table: pa.Table, result_batches: Iterator[pa.RecordBatch], points: _PointWriter,
                results_path: str | Path) -> None:
    """Index one part: its chunk rows and the result rows of the same requests."""
    report = points.report
    report.chunks += table.num_rows
    where = _request_rows(table)
    seen: set[str] = set()
    for batch in result_batches:
        for cid, status, matrix in _vectors_of_batch(batch):
            if cid not in where:
                continue  # not a request of this chunk table (the lifecycle reports these)
            first, n = where[cid]
            seen.add(cid)
            if status != "succeeded" or matrix is None:
                report.failed(cid, n)
                continue
            if matrix.shape[0] != n:
                raise BatchError(
                    f"{results_path}: request {cid} returned {matrix.shape[0]} embeddings "
                    f"for {n} inputs"
                )
            points.add(table.slice(first, n), matrix)
    points.flush()
    for cid, (_, n) in where.items():  # the lifecycle accounts for every custom_id; be safe
        if cid not in seen:
            report.failed(cid, n)


def index_results(
    index: VectorIndex,
    chunk_table: str | Path,
    results_path: str | Path,
    partition: str,
    model: str,
    batch_size: int = 256,
    delete_stale: bool = True,
    skip_unchanged: bool = True,
    part_bytes: int = INDEX_PART_BYTES,
) -> IndexReport:
    """Upsert every embedded chunk of a partition, then delete the partition's stale points.

    With `skip_unchanged`, points already stored identically are not rewritten. A chunk table
    over `part_bytes` is indexed in parts (spilled next to the results file)."""
    started = time.perf_counter()
    report = IndexReport(partition=partition)
    points = _PointWriter(index, report, partition, model, batch_size, skip_unchanged)
    for table, result_batches in _parts(chunk_table, results_path, part_bytes):
        _index_part(table, result_batches, points, results_path)
    present = report.upserted + report.unchanged  # points of this pass, all in `partition`
    # A collection created by this pass holds nothing stale; otherwise one count tells whether
    # anything else carries this partition before paying for a scroll over its ids.
    if (
        delete_stale
        and not report.created_collection
        and index.dimension() is not None
        and index.count(partition) != present
    ):
        report.stale_deleted = _delete_stale(index, partition, chunk_table, results_path,
                                             part_bytes)
    report.seconds = time.perf_counter() - started
    return report
