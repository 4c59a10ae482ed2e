"""Grace-hash-join plumbing: rows spilled to disk by the hash of a key (a custom_id, a point id),
so two large inputs can be matched one partition at a time with memory that does not grow with
their size. Used by the results join and by the embeddings index step."""

from __future__ import annotations

import ctypes
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

# Added rows queued in memory before they are split and appended to the partition files.
SPILL_BYTES = 8 * 1024 * 1024
MAX_PARTITIONS = 1024
# Open files kept free for everything else the process has open besides a spill's parts.
SPARE_FILES = 64


def partitions_for(size: int, part_bytes: int) -> int:
    """How many partitions split `size` bytes into parts of about `part_bytes` (1 or more)."""
    return max(1, min(max_partitions(), -(-size // max(1, part_bytes))))


def files_needed(partitions: int) -> int:
    """Open files a spill of `partitions` needs: two per partition (one per kind), plus spare."""
    return 2 * partitions + SPARE_FILES


def max_partitions() -> int:
    """MAX_PARTITIONS, or fewer if the open-file limit, even raised as far as this process may
    (`raise_file_limit`), cannot hold two files per partition. Reads the limit, never sets it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):  # no such limit here
        return 64
    infinity = resource.RLIM_INFINITY
    want = files_needed(MAX_PARTITIONS)
    if soft != infinity and soft < want:  # what raise_file_limit will raise it to
        soft = want if hard == infinity else min(want, hard)
    if soft == infinity:
        return MAX_PARTITIONS
    return max(1, min(MAX_PARTITIONS, (soft - SPARE_FILES) // 2))


def raise_file_limit(files: int) -> None:
    """Raise this process's soft open-file limit (RLIMIT_NOFILE) to hold `files`, as far as
    the hard limit allows; never lowers it. A spill calls it before it opens its parts (the
    default soft limit, often 1024, is below what MAX_PARTITIONS parts need). Where the limit
    cannot be raised, nothing changes, and opening too many files fails with EMFILE."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < files:
            target = files if hard == resource.RLIM_INFINITY else min(files, hard)
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):  # no such limit here, or not allowed to raise it
        return


def release_memory() -> None:
    """Give freed memory back to the OS (keeps peak RSS flat): Arrow's pool, and glibc's
    per-thread arenas that the parser threads leave behind."""
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_malloc_trim = _load_malloc_trim()


class HashSpill:
    """Rows of two kinds ("req" and "res"), each split into N partitions by the hash of their
    first column (the key), as Arrow IPC stream files: partition i of both kinds holds the
    same keys, so a join reads one pair at a time. Rows keep their order within a partition.

    Added rows are queued until SPILL_BYTES are waiting (fewer, larger writes than one per
    block and partition), then split by partition and written by a helper thread while the
    caller reads on.
    """

    def __init__(self, folder: Path, n: int):
        self.folder, self.n = folder, n
        raise_file_limit(files_needed(n))  # the parts are opened as rows arrive
        self.writers: dict[str, list[Any]] = {"req": [None] * n, "res": [None] * n}
        self.sinks: list[pa.NativeFile] = []
        self.queued: dict[str, list[pa.RecordBatch]] = {"req": [], "res": []}
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: Future | None = None

    @classmethod
    @contextmanager
    def temporary(cls, n: int, near: str | Path | None, prefix: str) -> Iterator[HashSpill]:
        """A spill in a new folder inside `near` (else the system's temp folder), closed and
        removed afterwards, also after an error."""
        folder = tempfile.mkdtemp(prefix=prefix, dir=near)
        spill = cls(Path(folder), n)
        try:
            yield spill
        finally:
            spill.shutdown()
            shutil.rmtree(folder, ignore_errors=True)

    def add(self, kind: str, batches: list[pa.RecordBatch]) -> None:
        queue = self.queued[kind]
        queue.extend(b for b in batches if b.num_rows)
        if sum(b.nbytes for b in queue) >= SPILL_BYTES:
            self._hand_off(kind)

    def _hand_off(self, kind: str) -> None:
        queue = self.queued[kind]
        if not queue:
            return
        table = pa.Table.from_batches(queue)
        queue.clear()
        self._wait()  # one spill in flight at a time: memory stays bounded
        self.pending = self.pool.submit(self._spill, kind, table)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _spill(self, kind: str, table: pa.Table) -> None:
        """Split rows by partition and append each part to its partition file."""
        if self.n == 1:
            self._write(kind, 0, table)
            return
        part = partition_of(table.column(0), self.n)
        order = pa.array(np.argsort(part, kind="stable"))
        # column by column: Table.take is much slower on these columns
        ordered = pa.Table.from_arrays([c.take(order) for c in table.columns], schema=table.schema)
        del table
        start = 0
        for i, count in enumerate(np.bincount(part, minlength=self.n).tolist()):
            if count:
                self._write(kind, i, ordered.slice(start, count))
                start += count
        del ordered
        release_memory()

    def _write(self, kind: str, i: int, table: pa.Table) -> None:
        writers = self.writers[kind]
        if writers[i] is None:
            sink = pa.OSFile(str(self.folder / f"{kind}-{i}.arrow"), "wb")
            self.sinks.append(sink)
            writers[i] = pa.ipc.new_stream(sink, table.schema)
        writers[i].write_table(table)

    def close(self) -> None:
        """Write what is queued and close the partition files (ready to be read)."""
        self._hand_off("req")
        self._hand_off("res")
        self._wait()
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the helper thread and close the files (also after an error; idempotent)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending = None
        writers = self.writers["req"] + self.writers["res"]
        self.writers = {"req": [None] * self.n, "res": [None] * self.n}
        for w in writers:
            if w is not None:
                w.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def read(self, kind: str, i: int, schema: pa.Schema) -> pa.Table:
        """Partition i's rows of `kind` as one table; the file is removed."""
        path = self.folder / f"{kind}-{i}.arrow"
        if not path.exists():
            return schema.empty_table()
        with pa.OSFile(str(path), "rb") as source:
            table = pa.ipc.open_stream(source).read_all().combine_chunks()
        path.unlink()
        return table

    def stream(self, kind: str, i: int) -> Iterator[pa.RecordBatch]:
        """Partition i's rows of `kind`, a written batch at a time (memory stays at one)."""
        path = self.folder / f"{kind}-{i}.arrow"
        if path.exists():
            with pa.OSFile(str(path), "rb") as source:
                yield from pa.ipc.open_stream(source)
            path.unlink()


_MIX = np.random.default_rng(20240601).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def partition_of(ids: pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """Partition number of every (non-empty) custom_id: a position-weighted byte hash.

    Worked out 64k ids at a time: the per-byte temporaries are 8 bytes wide.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    step = 65_536
    parts = [_hash(ids.slice(i, step)) for i in range(0, len(ids), step)]
    h = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return (h % np.uint64(n)).astype(np.intp)


def _hash(ids: pa.Array) -> np.ndarray:
    _, offsets_buf, data_buf = ids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[ids.offset : ids.offset + len(ids) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    starts = (offsets - offsets[0])[:-1]
    lengths = np.diff(offsets)
    with np.errstate(over="ignore"):
        if lengths[0] > 0 and (lengths == lengths[0]).all():
            # Ids of one length (as one builder makes them): their bytes as the rows of a matrix
            # times the weights, the same sums without a weight looked up per byte (10x faster).
            rows = data.reshape(len(ids), int(lengths[0])).astype(np.uint64) + np.uint64(1)
            h = rows @ _MIX[np.arange(int(lengths[0])) & 63]
        else:
            position = np.arange(len(data)) - np.repeat(starts, lengths)
            h = np.add.reduceat((data.astype(np.uint64) + np.uint64(1)) * _MIX[position & 63],
                                starts)
        h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h
