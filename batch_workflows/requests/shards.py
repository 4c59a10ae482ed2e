"""Write requests as JSONL shards that each fit a provider's per-file limits.

Boundaries are deterministic: the same requests, in the same order, with the same limits give
the same shards byte for byte. Every request goes through `RequestValidator` as it is written;
if any is bad, whatever was written is deleted and `InvalidInputError` lists the problems.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.pricing import estimate_tokens
from batch_workflows.profiles import ProviderProfile
from batch_workflows.requests.lines import iter_file_lines
from batch_workflows.requests.manifest import Shard, ShardManifest
from batch_workflows.requests.validate import RequestValidator
from batch_workflows.wire import BatchRequest

__all__ = ["write_shards"]

_FLUSH_BYTES = 1 << 18  # write and hash blocks this big: small enough to stay in CPU cache


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
            yield from iter_file_lines(shard.path, 1 << 40)

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
    max_tokens_per_file: int | None = None,
) -> ShardManifest:
    """Validate and write `requests` as `{prefix}-00000.jsonl`, ... under `out_dir`.

    Each shard holds at most `max_requests_per_file` requests and `max_bytes_per_file` bytes
    (the profile's limits unless given), and with `max_tokens_per_file` at most that many
    estimated input tokens (``pricing.estimate_tokens``: so that one shard fits a provider's
    enqueued-token quota); a shard is cut just before the line that would not fit. On any invalid request nothing is left behind and InvalidInputError lists every
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
    # The validator's fast check, called directly: this is the hot loop, so per request it
    # only appends to lists and adds up counters; ids are registered a block at a time.
    fast = validator.fast_check
    add_ids = validator.add_valid_ids
    check = validator.check_object
    dumps = orjson.dumps
    max_line = profile.max_line_bytes
    ids: list[str] = []  # ids of the good requests since line `ids_first`, all consecutive
    keep = ids.append
    ids_first = 1
    block: list[bytes] = []  # lines not yet handed to the writer
    push = block.append
    block_bytes = shard_lines = shard_bytes = shard_tokens = tokens = 0
    line_no = 0
    try:
        for line_no, request in enumerate(requests, 1):  # noqa: B007 - line_no used below
            obj = request if type(request) is dict else _as_dict(request)
            try:
                line = dumps(obj)
            except TypeError as exc:
                validator.check_unwritable(line_no, exc)
                line, cid = b"null", None
            else:
                cid = fast(obj) if len(line) <= max_line else None
                if cid is None:
                    check(obj, line_no, len(line))
                    fast = validator.fast_check  # the full check may have fixed endpoint or model
            if cid is not None:
                keep(cid)
            else:
                if ids:
                    add_ids(ids, ids_first)
                    ids = []
                    keep = ids.append
                ids_first = line_no + 1
            n = len(line) + 1
            if n > max_bytes:
                validator.add_problem(
                    line_no,
                    None,
                    f"line is {n:,} bytes, more than the {max_bytes:,} allowed per file",
                    "line_too_long",
                )
                line, n = b"null", 5
            if max_tokens_per_file:
                tokens = _input_tokens(obj)
            if (shard_bytes + n > max_bytes or shard_lines >= max_requests
                    or (shard_lines and shard_tokens + tokens > (max_tokens_per_file or 0)
                        and max_tokens_per_file)):
                writer.end_shard(block, shard_lines, shard_bytes)
                block = []
                push = block.append
                block_bytes = shard_lines = shard_bytes = shard_tokens = 0
            shard_tokens += tokens
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
                    add_ids(ids, ids_first)
                    ids_first += len(ids)
                    ids = []
                    keep = ids.append
        if ids:
            add_ids(ids, ids_first)
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


def _input_tokens(obj: object) -> int:
    """Estimated input tokens of one request (0 for a line that is not a request object)."""
    body = obj.get("body") if isinstance(obj, dict) else None
    return estimate_tokens(body)[0] if isinstance(body, dict) else 0


def _as_dict(request: object) -> object:
    return request.model_dump() if isinstance(request, BatchRequest) else request
