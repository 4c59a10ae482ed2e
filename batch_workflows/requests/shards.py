"""Write requests as JSONL shards that each fit a provider's per-file limits.

Boundaries are deterministic: the same requests, in the same order, with the same limits give
the same shards byte for byte. Every request goes through `RequestValidator` as it is written;
if any is bad, whatever was written is deleted and `InvalidInputError` lists the problems.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batch_workflows.errors import ConfigurationError, InvalidInputError, Problem
from batch_workflows.profiles import ProviderProfile
from batch_workflows.requests.validate import RequestValidator, iter_line_batches
from batch_workflows.wire import BatchRequest

if TYPE_CHECKING:
    import pandas as pd

_FLUSH_BYTES = 1 << 18  # write and hash blocks this big: small enough to stay in CPU cache


@dataclass(frozen=True)
class Shard:
    """One written JSONL file."""

    path: str
    lines: int
    bytes: int
    sha256: str


@dataclass
class ShardManifest:
    """What `write_shards` wrote, in order."""

    endpoint: str
    model: str | None
    shards: list[Shard] = field(default_factory=list)

    @property
    def total_requests(self) -> int:
        return sum(s.lines for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def content_hash(self) -> str:
        """sha256 over the shards' sha256 hex digests, in order: changes iff content changes."""
        h = hashlib.sha256()
        for s in self.shards:
            h.update(s.sha256.encode("ascii") + b"\n")
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "total_requests": self.total_requests,
            "total_bytes": self.total_bytes,
            "content_hash": self.content_hash,
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardManifest:
        return cls(
            endpoint=data["endpoint"],
            model=data.get("model"),
            shards=[
                Shard(path=s["path"], lines=s["lines"], bytes=s["bytes"], sha256=s["sha256"])
                for s in data["shards"]
            ],
        )

    def write_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read_json(cls, path: str | os.PathLike[str]) -> ShardManifest:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class _ShardWriter:
    """Writes blocks of lines to numbered shard files; `write_shards` decides the cuts.

    Writing and hashing happen on one background thread, block by block (both release the
    GIL), so they overlap with serialising the next requests; at most two blocks are in memory.
    """

    def __init__(self, out_dir: Path, prefix: str):
        self.out_dir = out_dir
        self.prefix = prefix
        self.shards: list[Shard] = []
        self.written: list[Path] = []  # every file opened, for clean-up
        self._file: Any = None
        self._sha: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._job: Future[None] | None = None

    def _wait(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            job.result()

    def write(self, block: list[bytes]) -> None:
        """Append lines (without newlines) to the current shard, opening it if need be."""
        if not block:
            return
        if self._file is None:
            path = self.out_dir / f"{self.prefix}-{len(self.shards):05d}.jsonl"
            self.written.append(path)
            self._file = open(path, "wb")  # noqa: SIM115 - closed in end_shard/abort
            self._sha = hashlib.sha256()
        block.append(b"")
        data = b"\n".join(block)
        self._wait()
        self._job = self._pool.submit(_write_and_hash, self._file, self._sha, data)

    def end_shard(self, block: list[bytes], lines: int, size: int) -> None:
        """Write the last lines of the current shard, close it and record it."""
        self.write(block)
        self._wait()
        self._file.close()
        self._file = None
        self.shards.append(Shard(str(self.written[-1]), lines, size, self._sha.hexdigest()))

    def reread(self) -> Iterator[bytes]:
        """Every line written, in order (for confirming duplicate custom_ids)."""
        for shard in self.shards:
            with open(shard.path, "rb") as f:
                for batch in iter_line_batches(f, 1 << 40):
                    yield from batch

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Delete everything written so far."""
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            if self._file is not None:
                self._file.close()
                self._file = None
            for path in self.written:
                path.unlink(missing_ok=True)


def _write_and_hash(f: Any, sha: Any, data: bytes) -> None:
    f.write(data)
    sha.update(data)


def write_shards(
    requests: Iterable[dict | BatchRequest],
    out_dir: str | os.PathLike[str],
    profile: ProviderProfile,
    endpoint: str | None = None,
    prefix: str = "shard",
    max_requests_per_file: int | None = None,
    max_bytes_per_file: int | None = None,
) -> ShardManifest:
    """Validate and write `requests` as `{prefix}-00000.jsonl`, ... under `out_dir`.

    Each shard holds at most `max_requests_per_file` requests and `max_bytes_per_file` bytes
    (the profile's limits unless given); a shard is cut just before the line that would not
    fit. On any invalid request nothing is left behind and InvalidInputError lists every
    problem (line = 1-based position in `requests`).
    """
    max_requests = max_requests_per_file or profile.max_requests_per_file
    max_bytes = max_bytes_per_file or profile.max_bytes_per_file
    if max_requests < 1 or max_bytes < 16:
        raise ConfigurationError("shard limits must be at least 1 request and 16 bytes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out, prefix)
    # Every line, even a bad one, is written (bad ones as `null`) until the end, so that line N
    # of the shards is request N: that is what lets the validator re-read suspected duplicates.
    # The per-file limits are this function's job (it cuts shards to them), so the validator
    # leaves them out: the whole stream may well be bigger than one file may be.
    validator = RequestValidator(profile, endpoint, reread=writer.reread, file_limits=False)
    # The validator's own fast check and duplicate index, called directly: this is the hot
    # loop, so per request it only appends to lists and adds up counters.
    fast = validator._fast
    dups = validator._dups
    check = validator.check_object
    dumps = orjson.dumps
    max_line = profile.max_line_bytes
    ids: list[str] = []  # ids of the good requests since line `ids_first`, all consecutive
    keep = ids.append
    ids_first = 1
    block: list[bytes] = []  # lines not yet handed to the writer
    push = block.append
    block_bytes = shard_lines = shard_bytes = 0
    line_no = 0
    try:
        for line_no, request in enumerate(requests, 1):  # noqa: B007 - line_no used below
            obj = request if type(request) is dict else _as_dict(request)
            try:
                line = dumps(obj)
            except TypeError as exc:
                validator._problem(
                    line_no, None, f"cannot be written as JSON: {exc}", "invalid_json"
                )
                line, cid = b"null", None
            else:
                cid = fast(obj) if len(line) <= max_line else None
                if cid is None:
                    check(obj, line_no, len(line))
                    fast = validator._fast  # the full check may have fixed endpoint or model
            if cid is not None:
                keep(cid)
            else:
                if ids:
                    dups.add_many(ids, ids_first)
                    ids = []
                    keep = ids.append
                ids_first = line_no + 1
            n = len(line) + 1
            if n > max_bytes:
                validator._problem(
                    line_no,
                    None,
                    f"line is {n:,} bytes, more than the {max_bytes:,} allowed per file",
                    "line_too_long",
                )
                line, n = b"null", 5
            if shard_bytes + n > max_bytes or shard_lines >= max_requests:
                writer.end_shard(block, shard_lines, shard_bytes)
                block = []
                push = block.append
                block_bytes = shard_lines = shard_bytes = 0
            push(line)
            shard_lines += 1
            shard_bytes += n
            block_bytes += n
            if block_bytes >= _FLUSH_BYTES:
                writer.write(block)
                block = []
                push = block.append
                block_bytes = 0
                if ids:
                    dups.add_many(ids, ids_first)
                    ids_first += len(ids)
                    ids = []
                    keep = ids.append
        if ids:
            dups.add_many(ids, ids_first)
        if shard_lines:
            writer.end_shard(block, shard_lines, shard_bytes)
        validator.lines = line_no
        report = validator.finish()
        if report.problems:
            raise InvalidInputError(report.problems, report.truncated)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return ShardManifest(endpoint=report.endpoint or "", model=report.model, shards=writer.shards)


def _as_dict(request: object) -> object:
    return request.model_dump() if isinstance(request, BatchRequest) else request


def requests_from_dataframe(
    df: pd.DataFrame,
    body_fn: Callable[[dict[str, Any]], dict[str, Any]],
    id_column: str,
    url: str,
    chunk_rows: int = 4096,
) -> Iterator[dict[str, Any]]:
    """Requests from DataFrame rows: `body_fn(row_as_dict)` gives the body, `id_column` the id.

    Integer ids become strings; anything else is passed on for the validator to judge.
    """
    if id_column not in df.columns:
        raise ConfigurationError(f"column {id_column!r} is not in the DataFrame")
    for start in range(0, len(df), chunk_rows):
        for row in df.iloc[start : start + chunk_rows].to_dict("records"):
            cid = row[id_column]
            if isinstance(cid, int) and not isinstance(cid, bool):
                cid = str(cid)
            elif hasattr(cid, "item") and type(cid.item()) is int:  # numpy integer
                cid = str(cid.item())
            yield {"custom_id": cid, "method": "POST", "url": url, "body": body_fn(row)}


def iter_requests(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read a requests/shard file back, one dict per line (BOM and CRLF tolerated).

    Blank lines are skipped; a line that is not a JSON object raises InvalidInputError.
    """
    source = os.fspath(path)
    line_no = 0
    with open(source, "rb") as f:
        for batch in iter_line_batches(f, 1 << 30):
            for raw in batch:
                line_no += 1
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
