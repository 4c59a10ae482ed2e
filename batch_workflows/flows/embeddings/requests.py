"""Chunks → /v1/embeddings batch requests, and the chunk table that says which chunk is which input.

One request carries many chunks (`input` is a list). Its custom_id is
``<document_id>#<first chunk index>+<number of inputs>``. The chunk table is the flow's side
table (Parquet, one row per chunk: custom_id, input_index, point_id, document_id, chunk_index,
source, partition, text, tokens, title); an input is the chunk's text under its document's title
(`chunking.embedding_text`, a contextual chunk header), the table keeps the raw chunk. Results +
chunk table are all it takes to rebuild the collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_workflows.flows.embeddings.chunking import Chunk, embedding_text
from batch_workflows.flows.embeddings.vectors import point_id
from batch_workflows.flows.side_table import DEFAULT_ROW_GROUP, SideTableWriter, rows_at
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.wire import MAX_INPUTS_PER_REQUEST

# OpenAI's per-request limits for /v1/embeddings: ≤ 2048 inputs, ≤ 300,000 tokens in total.
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
    """Streams the chunk table to Parquet in row groups (memory stays flat), counting the
    documents, chunks and tokens it records."""

    def __init__(self, path: str | Path, partition: str, row_group: int = DEFAULT_ROW_GROUP):
        self.partition = partition
        self._table = SideTableWriter(path, CHUNK_SCHEMA, row_group)
        self.path = self._table.path
        self.chunks = 0
        self.documents = 0
        self.tokens = 0
        self._last_doc: str | None = None

    def add(self, custom_id: str, group: list[Chunk]) -> None:
        """Record the chunks of one request, in input order."""
        for c in group:
            if c.document_id != self._last_doc:
                self.documents += 1
                self._last_doc = c.document_id
        n = len(group)
        self._table.extend({
            "custom_id": [custom_id] * n,
            "input_index": list(range(n)),
            "point_id": [point_id(c.document_id, c.chunk_index) for c in group],
            "document_id": [c.document_id for c in group],
            "chunk_index": [c.chunk_index for c in group],
            "source": [c.source for c in group],
            "partition": [self.partition] * n,
            "text": [c.text for c in group],
            "tokens": [c.tokens for c in group],
            "title": [c.title for c in group],
        })
        self.chunks += n
        self.tokens += sum(c.tokens for c in group)

    def close(self) -> None:
        self._table.close()


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


# --- reading the chunk table back -------------------------------------------------------------


def normalized(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Rows of a chunk table in CHUNK_SCHEMA; one written before titles existed gets empty ones."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_batches([table])
    if "title" not in table.column_names:
        table = table.append_column("title", pa.array([""] * table.num_rows, pa.string()))
    return table.select(CHUNK_SCHEMA.names).cast(CHUNK_SCHEMA)


def read_chunk_table(path: str | Path) -> pa.Table:
    """A whole chunk table in memory (small tables; index_results streams large ones)."""
    return normalized(pq.read_table(str(path)))


def chunk_rows(path: str | Path, rows: list[int]) -> pa.Table:
    """The chunk table's rows at `rows` (ascending), reading only the row groups that hold them."""
    return normalized(rows_at(path, rows))


def embedded_texts(table: pa.Table, rows: Iterable[int] | None = None) -> list[str]:
    """The exact inputs the chunks at `rows` (all by default) were embedded from."""
    if rows is not None:
        table = table.take(list(rows))
    texts = table.column("text").to_pylist()
    titles = table.column("title").to_pylist()
    return [embedding_text(t, h) for t, h in zip(texts, titles, strict=True)]
