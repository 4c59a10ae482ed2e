"""Which request lines share a custom_id, in memory that stays flat however long the file.

`DuplicateIndex` keeps a 64-bit hash per id and spills sorted runs to disk; its candidates
are lines whose ids hash alike. `confirm_duplicates` re-reads those lines to keep only ids
that are really equal; without a way to re-read, the index keeps a second, independent hash,
and two 64-bit hashes that agree are taken as proof.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import orjson

DUPLICATE_BUFFER = 1 << 18  # custom_id hashes held in memory before a run is spilled to disk


class DuplicateIndex:
    """Memory-flat duplicate detection over custom_ids.

    Keeps a 64-bit hash and the line number of every id in a bounded buffer; a full buffer is
    sorted and spilled to a temporary run file. `candidates()` merges the runs bucket by bucket
    (by the top byte of the hash) and yields groups of lines that share a hash. Without a file
    to re-read, a second, independent 64-bit hash is kept too, and groups must agree on both.
    Line numbers are kept as segments (buffer position, line) since ids mostly come from
    consecutive lines; they are expanded only when a buffer is spilled.
    """

    BUCKETS = 256

    def __init__(self, double_hash: bool, buffer_size: int | None = None):
        self.double_hash = double_hash
        self.buffer_size = buffer_size or DUPLICATE_BUFFER
        self.hashes = array("q")
        self.checks = array("q")
        self._seg_pos = array("q")  # segment i: buffer positions from _seg_pos[i] ...
        self._seg_line = array("q")  # ... hold lines _seg_line[i], _seg_line[i] + 1, ...
        fields = [("h", "<u8"), ("line", "<i8")]
        if double_hash:
            fields.insert(1, ("c", "<u8"))
        self.dtype = np.dtype(fields)
        self._runs: list[tuple[str, np.ndarray]] = []  # (path, bucket offsets)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def _segment(self, pos: int, line_no: int) -> None:
        seg_pos, seg_line = self._seg_pos, self._seg_line
        if not seg_pos or seg_line[-1] + (pos - seg_pos[-1]) != line_no:
            seg_pos.append(pos)
            seg_line.append(line_no)

    def add(self, custom_id: str, line_no: int) -> None:
        self._segment(len(self.hashes), line_no)
        self.hashes.append(hash(custom_id))
        if self.double_hash:
            self.checks.append(hash("\x00" + custom_id))
        if len(self.hashes) >= self.buffer_size:
            self.spill()

    def add_many(self, custom_ids: list[str], first_line: int) -> None:
        """Register ids found on consecutive lines starting at `first_line`."""
        self._segment(len(self.hashes), first_line)
        self.hashes.extend(map(hash, custom_ids))
        if self.double_hash:
            self.checks.extend(map(hash, map("\x00".__add__, custom_ids)))
        if len(self.hashes) >= self.buffer_size:
            self.spill()

    def _records(self) -> np.ndarray:
        n = len(self.hashes)
        rec = np.empty(n, dtype=self.dtype)
        if n:
            rec["h"] = np.frombuffer(self.hashes, dtype=np.int64).view(np.uint64)
            if self.double_hash:
                rec["c"] = np.frombuffer(self.checks, dtype=np.int64).view(np.uint64)
            pos = np.frombuffer(self._seg_pos, dtype=np.int64)
            first = np.frombuffer(self._seg_line, dtype=np.int64)
            counts = np.diff(np.append(pos, n))
            rec["line"] = np.repeat(first - pos, counts) + np.arange(n, dtype=np.int64)
            del pos, first  # views on the arrays cleared below
        del self.hashes[:], self.checks[:], self._seg_pos[:], self._seg_line[:]
        return rec

    def _bounds(self, h: np.ndarray) -> np.ndarray:
        edges = np.arange(self.BUCKETS + 1, dtype=np.uint64) << np.uint64(56)
        bounds = np.searchsorted(h, edges[:-1]).astype(np.int64)
        return np.append(bounds, len(h))

    def spill(self) -> None:
        if not self.hashes:
            return
        rec = self._records()
        rec = rec[np.argsort(rec["h"], kind="stable")]  # stable: lines stay ascending per hash
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="bw-validate-")
        path = os.path.join(self._tmpdir.name, f"run-{len(self._runs):05d}.bin")
        rec.tofile(path)
        self._runs.append((path, self._bounds(rec["h"])))

    def _groups_in(self, rec: np.ndarray) -> Iterator[list[int]]:
        """Groups of lines (ascending) sharing a hash, and the check hash where there is one."""
        if len(rec) < 2:
            return
        h = rec["h"]
        order = np.argsort(h, kind="stable")  # stable: equal hashes stay in line order
        hs = h[order]
        same = hs[1:] == hs[:-1]
        if not same.any():
            return
        # start and end (exclusive) of each run of equal hashes
        edges = np.diff(np.concatenate(([0], same.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) + 1
        lines = rec["line"]
        checks = rec["c"] if self.double_hash else None
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = order[lo:hi]
            if checks is None:
                yield sorted(int(x) for x in lines[idx])
                continue
            by_check: dict[int, list[int]] = {}
            for i in idx.tolist():
                by_check.setdefault(int(checks[i]), []).append(int(lines[i]))
            yield from (sorted(group) for group in by_check.values() if len(group) > 1)

    def candidates(self) -> Iterator[list[int]]:
        """Groups of line numbers (ascending) whose custom_ids hash alike."""
        if not self._runs:
            yield from self._groups_in(self._records())
            return
        self.spill()
        handles = [open(path, "rb") for path, _ in self._runs]  # noqa: SIM115
        try:
            item = self.dtype.itemsize
            for b in range(self.BUCKETS):
                parts = []
                for fh, (_, bounds) in zip(handles, self._runs, strict=True):
                    lo, hi = int(bounds[b]), int(bounds[b + 1])
                    if hi > lo:
                        fh.seek(lo * item)
                        parts.append(np.fromfile(fh, dtype=self.dtype, count=hi - lo))
                if parts:
                    yield from self._groups_in(np.concatenate(parts))
        finally:
            for fh in handles:
                fh.close()

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._runs = []
        del self.hashes[:], self.checks[:], self._seg_pos[:], self._seg_line[:]


def confirm_duplicates(
    groups: Iterable[list[int]], reread: Callable[[], Iterable[bytes]], max_problems: int
) -> tuple[list[tuple[str, list[int]]], bool]:
    """Re-read the lines to keep only those whose custom_ids are really equal.

    Returns the groups of lines (ascending) that share an id, with the id, and whether some
    were left out. At most `budget` line numbers are held: past it the groups whose first
    repeat comes latest are dropped, so that the problems kept are still the earliest ones.
    """
    truncated = False
    budget = max(10_000, 10 * max_problems)  # bounds memory on absurd inputs
    per_group = max(2, max_problems + 1)  # no group shows more problems than the cap
    kept: list[tuple[int, int, list[int]]] = []  # max-heap on the first repeat's line
    held = 0
    for seq, lines in enumerate(groups):
        if len(lines) > per_group:
            lines = lines[:per_group]
            truncated = True
        heapq.heappush(kept, (-lines[1], seq, lines))
        held += len(lines)
        while held > budget:
            held -= len(heapq.heappop(kept)[2])
            truncated = True
    hashed = [lines for _, _, lines in kept]
    wanted = {line for lines in hashed for line in lines}
    if not wanted:
        return [], truncated
    ids: dict[int, str] = {}
    for line_no, raw in enumerate(reread(), 1):
        if line_no in wanted:
            obj = orjson.loads(raw)
            if type(obj) is dict and type(obj.get("custom_id")) is str:
                ids[line_no] = obj["custom_id"]
    real: list[tuple[str, list[int]]] = []
    for lines in hashed:
        by_id: dict[str, list[int]] = {}
        for line_no in lines:
            if line_no in ids:
                by_id.setdefault(ids[line_no], []).append(line_no)
        real.extend((cid, same) for cid, same in by_id.items() if len(same) > 1)
    return real, truncated
