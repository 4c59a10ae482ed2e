"""A side table: what a flow keeps about each of its requests, keyed by ``custom_id``, in Parquet.

The joined results say what came back for a request; a flow often needs more to turn that into
its output: the embeddings flow which chunk is the i-th input of which request, a distillation
flow which prompt, source and sample a request is. The flow writes that as a side table beside
the request shards while it builds the requests, and reads it back next to the results.

Written in row groups (memory stays flat however many requests); a request's rows are added
together, so they are consecutive in the file. `RequestTally` checks, streamed and with memory
that does not grow, that a side table and a results file name the same requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_workflows.errors import ConfigurationError
from batch_workflows.parquet import open_parquet

CUSTOM_ID = "custom_id"
DEFAULT_ROW_GROUP = 4096


class SideTableWriter:
    """Streams rows of `schema` (which has a ``custom_id`` column) to a Parquet file."""

    def __init__(self, path: str | Path, schema: pa.Schema, row_group: int = DEFAULT_ROW_GROUP):
        if CUSTOM_ID not in schema.names:
            raise ConfigurationError(f"a side table needs a {CUSTOM_ID!r} column: {schema}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.row_group = row_group
        self.rows = 0  # rows added so far
        self._buffer: dict[str, list] = {name: [] for name in schema.names}
        self._writer = pq.ParquetWriter(str(self.path), schema)

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row (a value for every column)."""
        values = [row[name] for name in self._buffer]  # a missing column fails before any is added
        for column, value in zip(self._buffer.values(), values, strict=True):
            column.append(value)
        self._added(1)

    def extend(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Add many rows at once, column by column (every column, the same length)."""
        lengths = {len(columns[name]) for name in self._buffer}
        if len(lengths) != 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        for name, values in self._buffer.items():
            values.extend(columns[name])
        self._added(lengths.pop())

    def _added(self, n: int) -> None:
        self.rows += n
        if len(self._buffer[CUSTOM_ID]) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer[CUSTOM_ID]:
            self._writer.write_table(pa.table(self._buffer, schema=self.schema))
            self._buffer = {name: [] for name in self.schema.names}

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> SideTableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_at(path: str | Path, rows: Sequence[int]) -> pa.Table:
    """The table's rows at `rows` (ascending), reading only the row groups that hold them."""
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
            parts.append(pf.read_row_group(group).take(take))
        start = end
    return pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table()


def sample_rows(n_rows: int, k: int) -> list[int]:
    """k evenly spread row numbers (deterministic) out of n_rows."""
    if n_rows <= k:
        return list(range(n_rows))
    step = n_rows / k
    return [int(i * step) for i in range(k)]


# --- do a side table and the results name the same requests? --------------------------------


@dataclass(frozen=True)
class RequestTally:
    """How many requests a file names, and an order-free fingerprint of their custom_ids
    (the sum of 64-bit hashes, mod 2**64): two files name the same set of requests when both
    agree, with memory that does not grow with the file."""

    requests: int
    fingerprint: int
    rows: int = 0  # rows of a side table (0 for results)

    def same_requests(self, other: RequestTally) -> bool:
        return (self.requests, self.fingerprint) == (other.requests, other.fingerprint)


_MASK = (1 << 64) - 1


def _id_hash(custom_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(custom_id.encode(), digest_size=8).digest(), "little")


def _custom_ids(path: str | Path, batch_rows: int = 65_536) -> Iterator[list[str]]:
    for batch in open_parquet(path).iter_batches(batch_size=batch_rows, columns=[CUSTOM_ID]):
        yield batch.column(0).to_pylist()


def tally_side_table(path: str | Path) -> RequestTally:
    """The requests of a side table, streamed: a request starts wherever the custom_id changes
    (the writer adds a request's rows together)."""
    requests = fingerprint = rows = 0
    last: str | None = None
    for ids in _custom_ids(path):
        rows += len(ids)
        for cid in ids:
            if cid != last:
                requests += 1
                fingerprint = (fingerprint + _id_hash(cid)) & _MASK
                last = cid
    return RequestTally(requests, fingerprint, rows)


def tally_results(path: str | Path) -> RequestTally:
    """The requests of a joined results Parquet (one row per submitted custom_id), streamed."""
    requests = fingerprint = 0
    for ids in _custom_ids(path):
        requests += len(ids)
        for cid in ids:
            fingerprint = (fingerprint + _id_hash(cid)) & _MASK
    return RequestTally(requests, fingerprint)
