"""The embeddings flow as plain functions: chunks → /v1/embeddings requests (+ a chunk table),
and result Parquet + chunk table → points in Qdrant. The Dagster assets wrap these.

One request carries many chunks (`input` is a list). Its custom_id is
``<document_id>#<first chunk index>+<number of inputs>``; the chunk table (Parquet, one row per
chunk: custom_id, input_index, point_id, document_id, chunk_index, source, partition, text,
tokens, title) says which chunk is the i-th input of which request. An input is the chunk's text
under its document's title (`chunking.embedding_text`, a contextual chunk header); the point's
payload keeps the raw chunk. Results + chunk table are all it takes to rebuild the collection.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_workflows.errors import BatchError, ConfigurationError
from batch_workflows.flows.embeddings.chunking import Chunk, embedding_text
from batch_workflows.flows.embeddings.vectors import VectorIndex, point_id
from batch_workflows.parquet import open_parquet
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.spill import HashSpill, partitions_for, release_memory

# OpenAI's per-request limits for /v1/embeddings: ≤ 2048 inputs, ≤ 300,000 tokens in total.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
DEFAULT_INPUTS_PER_REQUEST = 128
DEFAULT_TOKENS_PER_REQUEST = 100_000

CHUNK_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("input_index", pa.int32()),
        ("point_id", pa.string()),
        ("document_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("source", pa.string()),
        ("partition", pa.string()),
        ("text", pa.string()),
        ("tokens", pa.int32()),
        ("title", pa.string()),  # the contextual header the chunk was embedded under
    ]
)


def group_chunks(
    chunks: Iterable[Chunk],
    max_inputs: int = DEFAULT_INPUTS_PER_REQUEST,
    max_tokens: int = DEFAULT_TOKENS_PER_REQUEST,
) -> Iterator[list[Chunk]]:
    """Consecutive chunks grouped into requests of ≤ max_inputs inputs and ≤ max_tokens tokens."""
    max_inputs = max(1, min(max_inputs, MAX_INPUTS_PER_REQUEST))
    max_tokens = max(1, min(max_tokens, MAX_TOKENS_PER_REQUEST))
    group: list[Chunk] = []
    tokens = 0
    for chunk in chunks:
        if group and (len(group) >= max_inputs or tokens + chunk.tokens > max_tokens):
            yield group
            group, tokens = [], 0
        group.append(chunk)
        tokens += chunk.tokens
    if group:
        yield group


def custom_id_of(group: list[Chunk]) -> str:
    return f"{group[0].chunk_id}+{len(group)}"


class ChunkTableWriter:
    """Streams the chunk table to Parquet in row groups (memory stays flat)."""

    def __init__(self, path: str | Path, partition: str, row_group: int = 4096):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partition = partition
        self.row_group = row_group
        self.rows: dict[str, list] = {name: [] for name in CHUNK_SCHEMA.names}
        self.writer = pq.ParquetWriter(str(self.path), CHUNK_SCHEMA)
        self.chunks = 0
        self.documents = 0
        self.tokens = 0
        self._last_doc: str | None = None

    def add(self, custom_id: str, group: list[Chunk]) -> None:
        r = self.rows
        for i, c in enumerate(group):
            r["custom_id"].append(custom_id)
            r["input_index"].append(i)
            r["point_id"].append(point_id(c.document_id, c.chunk_index))
            r["document_id"].append(c.document_id)
            r["chunk_index"].append(c.chunk_index)
            r["source"].append(c.source)
            r["partition"].append(self.partition)
            r["text"].append(c.text)
            r["tokens"].append(c.tokens)
            r["title"].append(c.title)
            self.chunks += 1
            self.tokens += c.tokens
            if c.document_id != self._last_doc:
                self.documents += 1
                self._last_doc = c.document_id
        if len(r["custom_id"]) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        if self.rows["custom_id"]:
            self.writer.write_table(pa.table(self.rows, schema=CHUNK_SCHEMA))
            self.rows = {name: [] for name in CHUNK_SCHEMA.names}

    def close(self) -> None:
        self._flush()
        self.writer.close()


def build_requests(
    chunks: Iterable[Chunk],
    model: str,
    table: ChunkTableWriter,
    max_inputs: int = DEFAULT_INPUTS_PER_REQUEST,
    max_tokens: int = DEFAULT_TOKENS_PER_REQUEST,
) -> Iterator[dict[str, Any]]:
    """/v1/embeddings batch requests, recording each request's chunks in `table` as it goes."""
    for group in group_chunks(chunks, max_inputs, max_tokens):
        cid = custom_id_of(group)
        table.add(cid, group)
        yield {
            "custom_id": cid,
            "method": "POST",
            "url": EMBEDDINGS,
            "body": {"model": model, "input": [c.embedding_text for c in group]},
        }


# --- accounting: do the chunk table and the results name the same requests? -----------------


@dataclass(frozen=True)
class RequestTally:
    """How many requests a file names, and an order-free fingerprint of their custom_ids
    (the sum of 64-bit hashes, mod 2**64): two files name the same set of requests when both
    agree, with memory that does not grow with the file."""

    requests: int
    fingerprint: int
    chunks: int = 0  # rows of a chunk table (0 for results)


_MASK = (1 << 64) - 1


def _id_hash(custom_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(custom_id.encode(), digest_size=8).digest(), "little")


def _custom_ids(path: str | Path, batch_rows: int = 65_536) -> Iterator[list[str]]:
    for batch in open_parquet(path).iter_batches(batch_size=batch_rows,
                                                        columns=["custom_id"]):
        yield batch.column(0).to_pylist()


def tally_chunk_table(path: str | Path) -> RequestTally:
    """The requests of a chunk table, streamed. A request's rows are consecutive (the writer
    adds them together), so a request starts wherever the custom_id changes."""
    requests = fingerprint = chunks = 0
    last: str | None = None
    for ids in _custom_ids(path):
        chunks += len(ids)
        for cid in ids:
            if cid != last:
                requests += 1
                fingerprint = (fingerprint + _id_hash(cid)) & _MASK
                last = cid
    return RequestTally(requests, fingerprint, chunks)


def tally_results(path: str | Path) -> RequestTally:
    """The requests of a joined results Parquet (one row per submitted custom_id), streamed."""
    requests = fingerprint = 0
    for ids in _custom_ids(path):
        requests += len(ids)
        for cid in ids:
            fingerprint = (fingerprint + _id_hash(cid)) & _MASK
    return RequestTally(requests, fingerprint)


# --- indexing -------------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalized(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Rows of a chunk table in CHUNK_SCHEMA; one written before titles existed gets empty ones."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_batches([table])
    if "title" not in table.column_names:
        table = table.append_column("title", pa.array([""] * table.num_rows, pa.string()))
    return table.select(CHUNK_SCHEMA.names).cast(CHUNK_SCHEMA)


def read_chunk_table(path: str | Path) -> pa.Table:
    """A whole chunk table in memory (small tables; index_results streams large ones)."""
    return _normalized(pq.read_table(str(path)))


def chunk_rows(path: str | Path, rows: list[int]) -> pa.Table:
    """The chunk table's rows at `rows` (ascending), reading only the row groups that hold them."""
    pf = open_parquet(path)
    parts, start, wanted = [], 0, iter(rows)
    row = next(wanted, None)
    for group in range(pf.metadata.num_row_groups):
        end = start + pf.metadata.row_group(group).num_rows
        take = []
        while row is not None and row < end:
            take.append(row - start)
            row = next(wanted, None)
        if take:
            parts.append(_normalized(pf.read_row_group(group)).take(take))
        start = end
    return pa.concat_tables(parts) if parts else CHUNK_SCHEMA.empty_table()


def embedded_texts(table: pa.Table, rows: Iterable[int] | None = None) -> list[str]:
    """The exact inputs the chunks at `rows` (all by default) were embedded from."""
    if rows is not None:
        table = table.take(list(rows))
    texts = table.column("text").to_pylist()
    titles = table.column("title").to_pylist()
    return [embedding_text(t, h) for t, h in zip(texts, titles, strict=True)]


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
            spill.add("req", _normalized(batch).to_batches())
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

    Points: id = uuid5(document id, chunk index); payload = text, document_id, chunk_index,
    source, partition, model. A failed request's chunks are counted, not indexed. With
    `skip_unchanged`, points already stored identically are not rewritten. A chunk table over
    `part_bytes` is indexed in parts (spilled next to the results file): memory stays flat."""
    import numpy as np

    started = time.perf_counter()
    report = IndexReport(partition=partition)
    buf_ids: list[str] = []
    buf_vecs: list[Any] = []
    buf_payloads: list[dict[str, Any]] = []

    def flush() -> None:
        if buf_ids:
            vectors = np.concatenate(buf_vecs)
            if skip_unchanged:
                written, same = index.upsert_changed(buf_ids, vectors, buf_payloads)
            else:
                written, same = index.upsert(buf_ids, vectors, buf_payloads), 0
            report.upserted += written
            report.unchanged += same
            buf_ids.clear()
            buf_vecs.clear()
            buf_payloads.clear()

    def failed(cid: str, chunks: int) -> None:
        report.failed_requests += 1
        report.failed_chunks += chunks
        if len(report.failed_sample) < 10:
            report.failed_sample.append(cid)

    for table, result_batches in _parts(chunk_table, results_path, part_bytes):
        report.chunks += table.num_rows
        # Per request (not per chunk): its first row and number of rows in this part. The
        # chunks' columns stay in Arrow and are read a request's slice at a time.
        where: dict[str, tuple[int, int]] = {}
        row = 0
        for batch in table.select(["custom_id"]).to_batches(max_chunksize=65_536):
            for cid in batch.column(0).to_pylist():
                first, n = where.get(cid, (row, 0))
                where[cid] = (first, n + 1)
                row += 1
        seen: set[str] = set()
        for batch in result_batches:
            for cid, status, matrix in _vectors_of_batch(batch):
                if cid not in where:
                    continue  # not a request of this chunk table (the lifecycle reports these)
                first, n = where[cid]
                seen.add(cid)
                if status != "succeeded" or matrix is None:
                    failed(cid, n)
                    continue
                if matrix.shape[0] != n:
                    raise BatchError(
                        f"{results_path}: request {cid} returned {matrix.shape[0]} embeddings "
                        f"for {n} inputs"
                    )
                if report.dimension is None:
                    report.dimension = int(matrix.shape[1])
                    report.created_collection = index.ensure_collection(report.dimension)
                part = table.slice(first, n)
                buf_ids.extend(part.column("point_id").to_pylist())
                for text, doc, idx, source in zip(
                    part.column("text").to_pylist(),
                    part.column("document_id").to_pylist(),
                    part.column("chunk_index").to_pylist(),
                    part.column("source").to_pylist(),
                    strict=True,
                ):
                    buf_payloads.append(
                        {
                            "text": text,
                            "document_id": doc,
                            "chunk_index": idx,
                            "source": source,
                            "partition": partition,
                            "model": model,
                        }
                    )
                buf_vecs.append(matrix.astype(np.float32, copy=False))
                if len(buf_ids) >= batch_size:
                    flush()
        flush()
        for cid, (_, n) in where.items():  # the lifecycle accounts for every custom_id; be safe
            if cid not in seen:
                failed(cid, n)
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


def sample_rows(n_rows: int, k: int) -> list[int]:
    """k evenly spread row numbers (deterministic) out of n_rows."""
    if n_rows <= k:
        return list(range(n_rows))
    step = n_rows / k
    return [int(i * step) for i in range(k)]


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingsSettings:
    """The flow's knobs, read once from the environment by the code location and the demo."""

    model: str = "all-MiniLM-L6-v2"
    watch_uri: str = ".data/inbox"
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    inputs_per_request: int = DEFAULT_INPUTS_PER_REQUEST
    tokens_per_request: int = DEFAULT_TOKENS_PER_REQUEST
    tokenizer: str | None = None  # a model folder, "regex", or None = the shipped model's
    id_field: str = "id"
    text_field: str = "text"
    text_unit: str = "file"
    pydoc_shards: int = 2
    check_sample: int = 8

    @classmethod
    def from_env(cls) -> EmbeddingsSettings:
        import os

        env = os.environ
        d = cls()

        def num(name: str, default: int) -> int:
            raw = env.get(name)
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None

        return cls(
            model=env.get("EMBEDDING_MODEL") or d.model,
            watch_uri=env.get("EMBEDDINGS_WATCH_URI") or d.watch_uri,
            chunk_tokens=num("EMBEDDINGS_CHUNK_TOKENS", d.chunk_tokens),
            chunk_overlap=num("EMBEDDINGS_CHUNK_OVERLAP", d.chunk_overlap),
            inputs_per_request=num("EMBEDDINGS_INPUTS_PER_REQUEST", d.inputs_per_request),
            tokens_per_request=num("EMBEDDINGS_TOKENS_PER_REQUEST", d.tokens_per_request),
            tokenizer=env.get("EMBEDDINGS_TOKENIZER") or None,
            id_field=env.get("EMBEDDINGS_ID_FIELD") or d.id_field,
            text_field=env.get("EMBEDDINGS_TEXT_FIELD") or d.text_field,
            text_unit=env.get("EMBEDDINGS_TEXT_UNIT") or d.text_unit,
            pydoc_shards=num("EMBEDDINGS_PYDOC_SHARDS", d.pydoc_shards),
            check_sample=num("EMBEDDINGS_CHECK_SAMPLE", d.check_sample),
        )
