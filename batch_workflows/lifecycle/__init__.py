"""Submit → track → collect as plain functions (DESIGN.md §4). No Dagster here.

The Dagster assets in ``assets/lifecycle.py`` are thin wrappers around these functions, and a
script or another orchestrator can drive the same lifecycle directly::

    key = submission_key("docs", "2024-01-01", EMBEDDINGS, manifest.content_hash, model)
    sub = submit(client, shard_paths, key, asset="docs", partition="2024-01-01",
                 endpoint=EMBEDDINGS, request_counts=[s.lines for s in manifest.shards])
    batches = wait(client, sub.batch_ids, poll_interval=5, timeout=3600)
    attempt = collect(client, sub, batches, shard_paths, work_dir)

State lives in two places only: the provider (every batch carries the submission key, asset,
partition, attempt and shard index in its ``metadata``) and the manifests the caller stores.
Because the provider's list is consulted before anything is created, a crash between any
two calls never leads to a second paid batch for the same content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson

from batch_workflows.client import is_reattachable
from batch_workflows.errors import BatchTimeoutError, ConfigurationError
from batch_workflows.parquet import open_parquet
from batch_workflows.server.settings import parse_duration
from batch_workflows.spill import partitions_for
from batch_workflows.wire import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    TERMINAL_STATUSES,
)

logger = logging.getLogger("batch_workflows.lifecycle")

# Seconds subtracted from our clock when bounding list scans by creation time (clock skew).
CLOCK_SLACK = 300

# Metadata written on every batch (provider limits in batch_workflows.wire).
META_KEY = "bw_key"  # the submission key (same for every attempt of one submission)
META_ASSET = "bw_asset"
META_PARTITION = "bw_partition"
META_ATTEMPT = "bw_attempt"
META_SHARD = "bw_shard"
META_SHARDS = "bw_shards"
RESERVED_METADATA = (META_KEY, META_ASSET, META_PARTITION, META_ATTEMPT, META_SHARD, META_SHARDS)
# The client adds one pair of its own (its idempotency key).
_CLIENT_PAIRS = 1
MAX_USER_METADATA_PAIRS = MAX_METADATA_PAIRS - len(RESERVED_METADATA) - _CLIENT_PAIRS


class BatchAPI(Protocol):
    """The part of ``batch_workflows.client.BatchClient`` the lifecycle uses."""

    def upload_file(self, path: str | os.PathLike[str], purpose: str = "batch") -> dict: ...
    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        created_after: int | None = None,
        look_first: bool = True,
    ) -> dict: ...
    def retrieve_batch(self, batch_id: str) -> dict: ...
    def cancel_batch(self, batch_id: str) -> dict: ...
    def list_batches(self, limit: int = 100, after: str | None = None) -> Iterator[dict]: ...
    def download_file(self, file_id: str, dest_path: str | os.PathLike[str]) -> int: ...


# -- keys and metadata -------------------------------------------------------------------------


def submission_key(
    asset: str,
    partition: str | None,
    endpoint: str,
    content_hash: str,
    model: str | None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """The idempotency key of a submission: sha256 over what is submitted, hex.

    Same asset, partition, endpoint, shard content, model and (sorted) parameters → same key;
    anything changed → a new key.
    """
    payload = {
        "asset": asset,
        "partition": partition,
        "endpoint": endpoint,
        "content": content_hash,
        "model": model,
        "params": params or {},
    }
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def _meta_value(value: str) -> str:
    """Values above the provider's limit are replaced by a stable digest, never cut silently."""
    if len(value) <= MAX_METADATA_VALUE_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def partition_tag(partition: str | None) -> str:
    """How a partition key is written into batch metadata (``""`` for unpartitioned)."""
    return _meta_value(partition or "")


def batch_metadata(
    key: str,
    asset: str,
    partition: str | None,
    attempt: int,
    shard: int,
    shards: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The metadata of one batch: ours plus the caller's, checked against provider limits."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ConfigurationError(f"batch metadata keys reserved by batch-workflows: {clash}")
    if len(extra) > MAX_USER_METADATA_PAIRS:
        raise ConfigurationError(
            f"at most {MAX_USER_METADATA_PAIRS} extra metadata pairs fit the provider's limit "
            f"of {MAX_METADATA_PAIRS}; got {len(extra)}"
        )
    for k, v in extra.items():
        if not isinstance(k, str) or not k or len(k) > MAX_METADATA_KEY_CHARS:
            raise ConfigurationError(f"metadata key {k!r}: must be 1..{MAX_METADATA_KEY_CHARS} chars")
        if len(str(v)) > MAX_METADATA_VALUE_CHARS:
            raise ConfigurationError(f"metadata value of {k!r}: over {MAX_METADATA_VALUE_CHARS} chars")
    meta = {
        META_KEY: key,
        META_ASSET: _meta_value(asset),
        META_PARTITION: partition_tag(partition),
        META_ATTEMPT: str(attempt),
        META_SHARD: str(shard),
        META_SHARDS: str(shards),
    }
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def shard_idempotency_key(key: str, attempt: int, shard: int) -> str:
    """The client-level idempotency key of one batch of a submission."""
    return f"{key}:a{attempt}:s{shard}"


# -- manifests ---------------------------------------------------------------------------------


@dataclass
class SubmittedBatch:
    """One shard of a submission and the batch that runs it."""

    shard: int
    batch_id: str
    input_file_id: str
    requests: int
    reattached: bool = False
    input_path: str | None = None


@dataclass
class SubmissionManifest:
    """What one attempt of a submission created (or re-attached to) at the provider."""

    key: str
    asset: str
    partition: str | None
    endpoint: str
    model: str | None
    attempt: int
    completion_window: str
    batches: list[SubmittedBatch]
    created_at: float = field(default_factory=time.time)

    @property
    def batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches]

    @property
    def file_ids(self) -> list[str]:
        return [b.input_file_id for b in self.batches]

    @property
    def request_counts(self) -> list[int]:
        return [b.requests for b in self.batches]

    @property
    def total_requests(self) -> int:
        return sum(b.requests for b in self.batches)

    @property
    def reattached(self) -> bool:
        """True when nothing new was created: every batch already existed."""
        return all(b.reattached for b in self.batches)

    @property
    def created(self) -> int:
        """How many batches this call created (0 when it only re-attached)."""
        return sum(not b.reattached for b in self.batches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubmissionManifest:
        values = dict(data)
        values["batches"] = [SubmittedBatch(**b) for b in values.get("batches", [])]
        return cls(**values)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> SubmissionManifest:
        return cls.from_dict(json.loads(data))

    def write_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(self.to_json())

    @classmethod
    def read_json(cls, path: str | os.PathLike[str]) -> SubmissionManifest:
        return cls.from_json(Path(path).read_bytes())


# -- listing -----------------------------------------------------------------------------------


def iter_lifecycle_batches(
    client: BatchAPI,
    *,
    asset: str | None = None,
    partition: str | None = None,
    key: str | None = None,
    created_after: float | None = None,
) -> Iterator[dict]:
    """Batches created by the lifecycle, newest first, filtered on their metadata.

    One paginated scan of the provider's list; stops at batches older than `created_after`.
    """
    for batch in client.list_batches(limit=100):
        created = batch.get("created_at")
        if (
            created_after is not None
            and isinstance(created, int | float)
            and created < created_after
        ):
            return
        meta = batch.get("metadata") or {}
        if META_KEY not in meta:
            continue
        if asset is not None and meta.get(META_ASSET) != _meta_value(asset):
            continue
        if partition is not None and meta.get(META_PARTITION) != partition_tag(partition):
            continue
        if key is not None and meta.get(META_KEY) != key:
            continue
        yield batch


def find_submission(
    client: BatchAPI, key: str, attempt: int, *, created_after: float | None = None
) -> dict[int, dict]:
    """The batches of one attempt of a submission, by shard index (one scan of the list).

    Every batch counts but a cancelled one (the client's `is_reattachable`, the one re-attach
    rule). `created_after` stops the scan early when the caller knows a lower bound.
    """
    found: dict[int, dict] = {}
    for batch in iter_lifecycle_batches(client, key=key, created_after=created_after):
        meta = batch.get("metadata") or {}
        if meta.get(META_ATTEMPT) != str(attempt) or not is_reattachable(batch):
            continue
        try:
            shard = int(meta.get(META_SHARD, ""))
        except ValueError:
            continue
        found.setdefault(shard, batch)  # newest first: keep the newest live one
    return found


def count_in_flight(client: BatchAPI, completion_window: str = "24h") -> int:
    """Batches at the provider that are not terminal (all of them, not only ours).

    A batch older than its completion window is terminal by definition, so the scan stops there.
    """
    horizon = time.time() - parse_duration(completion_window) - 3600
    count = 0
    for batch in client.list_batches(limit=100):
        created = batch.get("created_at")
        if isinstance(created, int | float) and created < horizon:
            break
        if batch.get("status") not in TERMINAL_STATUSES:
            count += 1
    return count


def wait_for_capacity(
    client: BatchAPI,
    needed: int,
    max_in_flight: int,
    *,
    completion_window: str = "24h",
    poll_interval: float = 5.0,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Block until `needed` more batches fit under `max_in_flight`; returns the in-flight count.

    Check-then-act: safe when submissions to the provider are serialised, as the lifecycle
    assets' Dagster pool (limit 1, the repo's dagster.yaml) does; otherwise two callers may both
    see room and overshoot the limit together.
    """
    if needed > max_in_flight:
        raise ConfigurationError(
            f"a submission of {needed} batches can never fit under max_in_flight={max_in_flight}; "
            "raise the limit or use bigger shards"
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        in_flight = count_in_flight(client, completion_window)
        if in_flight + needed <= max_in_flight:
            return in_flight
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchTimeoutError(
                f"{in_flight} batches in flight; no room for {needed} more under "
                f"{max_in_flight} after {timeout:g}s"
            )
        logger.info(
            "%d batches in flight (max %d); waiting for room for %d",
            in_flight,
            max_in_flight,
            needed,
        )
        sleep(poll_interval)


# -- submit ------------------------------------------------------------------------------------


def _count_lines(path: str | os.PathLike[str]) -> int:
    count = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                count += 1
    return count


def submit(
    client: BatchAPI,
    shard_paths: Sequence[str | os.PathLike[str]],
    key: str,
    *,
    asset: str,
    partition: str | None,
    endpoint: str,
    model: str | None = None,
    attempt: int = 1,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    request_counts: Sequence[int] | None = None,
    max_in_flight: int | None = None,
    poll_interval: float = 5.0,
    capacity_timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    existing: Mapping[int, dict] | None = None,
    created_after: float | None = None,
) -> SubmissionManifest:
    """Upload each shard and create one batch per shard, unless it already exists.

    Existing batches are found through the provider's list by their metadata (submission key,
    attempt, shard index) in one scan (bounded by `created_after` when given), so a re-run after
    a crash or a re-materialization re-attaches instead of paying twice. Cancelled batches are
    not re-attached to: their shards are submitted again. A caller that looked already passes
    `existing` (``find_submission``'s answer); the paths of those shards are then never read.
    The client scans the list again only after an ambiguous create failure, and then only back
    to when this call started.
    """
    if not shard_paths:
        raise ConfigurationError("nothing to submit: no shards")
    if request_counts is not None and len(request_counts) != len(shard_paths):
        raise ConfigurationError("request_counts must have one entry per shard")
    shards = len(shard_paths)
    started = int(time.time()) - CLOCK_SLACK
    if existing is None:
        existing = find_submission(client, key, attempt, created_after=created_after)
    missing = [i for i in range(shards) if i not in existing]
    if missing and max_in_flight:
        wait_for_capacity(
            client,
            len(missing),
            max_in_flight,
            completion_window=completion_window,
            poll_interval=poll_interval,
            timeout=capacity_timeout,
            sleep=sleep,
        )
    batches = []
    for i, path in enumerate(shard_paths):
        count = request_counts[i] if request_counts is not None else _count_lines(path)
        if i in existing:
            batch = existing[i]
            batches.append(
                SubmittedBatch(
                    i,
                    batch["id"],
                    batch.get("input_file_id", ""),
                    count,
                    reattached=True,
                    input_path=str(path),
                )
            )
            continue
        uploaded = client.upload_file(path)
        batch = client.create_batch(
            uploaded["id"],
            endpoint,
            completion_window,
            metadata=batch_metadata(key, asset, partition, attempt, i, shards, metadata),
            extra_body=extra_body,
            idempotency_key=shard_idempotency_key(key, attempt, i),
            created_after=started,
            look_first=False,  # looked above; the client looks again after an ambiguous failure
        )
        # The client re-attaches on its own idempotency key after an ambiguous failure.
        reattached = batch.get("input_file_id") not in (None, uploaded["id"])
        batches.append(
            SubmittedBatch(
                i,
                batch["id"],
                batch.get("input_file_id", uploaded["id"]),
                count,
                reattached=reattached,
                input_path=str(path),
            )
        )
        logger.info(
            "created batch %s for shard %d/%d of %s (attempt %d)",
            batch["id"],
            i + 1,
            shards,
            asset,
            attempt,
        )
    # When the submission started: the oldest batch re-attached to, else now.
    times = [b.get("created_at") for b in existing.values()]
    started_at = min([t for t in times if isinstance(t, int | float)] + [time.time()])
    return SubmissionManifest(
        key, asset, partition, endpoint, model, attempt, completion_window, batches, started_at
    )


# -- track -------------------------------------------------------------------------------------


def is_terminal(batch: Mapping[str, Any]) -> bool:
    return batch.get("status") in TERMINAL_STATUSES


def snapshot(
    client: BatchAPI,
    batch_ids: Iterable[str],
    *,
    created_after: float | None = None,
    retrieve_below: int = 8,
) -> dict[str, dict]:
    """The current state of some batches.

    Few batches: one retrieve each. Many: one paginated list scan (newest first, stopping once
    all are found or at `created_after`), then a retrieve for any the scan did not reach.
    """
    wanted = set(batch_ids)
    if len(wanted) <= retrieve_below:
        return {bid: client.retrieve_batch(bid) for bid in wanted}
    found: dict[str, dict] = {}
    for batch in client.list_batches(limit=100):
        if batch.get("id") in wanted:
            found[batch["id"]] = batch
            if len(found) == len(wanted):
                break
        created = batch.get("created_at")
        if (
            created_after is not None
            and isinstance(created, int | float)
            and created < created_after
        ):
            break
    for bid in wanted - found.keys():
        found[bid] = client.retrieve_batch(bid)
    return found


def progress(batches: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate status and ``request_counts`` of some batches (for logs and observations)."""
    statuses: dict[str, int] = {}
    total = completed = failed = 0
    for b in batches:
        statuses[b.get("status", "unknown")] = statuses.get(b.get("status", "unknown"), 0) + 1
        counts = b.get("request_counts") or {}
        total += int(counts.get("total") or 0)
        completed += int(counts.get("completed") or 0)
        failed += int(counts.get("failed") or 0)
    done = all(s in TERMINAL_STATUSES for s in statuses) if statuses else False
    return {
        "statuses": statuses,
        "total": total,
        "completed": completed,
        "failed": failed,
        "terminal": done,
    }


def wait(
    client: BatchAPI,
    batch_ids: Sequence[str],
    *,
    poll_interval: float = 5.0,
    timeout: float | None = None,
    on_progress: Callable[[dict[str, dict]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict]:
    """Poll until every batch is terminal; BatchTimeoutError after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        batches = snapshot(client, batch_ids)
        if on_progress is not None:
            on_progress(batches)
        if all(is_terminal(b) for b in batches.values()):
            return batches
        if deadline is not None and time.monotonic() >= deadline:
            p = progress(batches.values())
            raise BatchTimeoutError(
                f"{len(batch_ids)} batch(es) not terminal after {timeout:g}s: {p['statuses']}"
            )
        sleep(poll_interval)


def cancel(client: BatchAPI, batch_ids: Iterable[str]) -> list[dict]:
    """Cancel every batch that is not terminal yet; returns the batches as the provider left them."""
    out = []
    for bid in batch_ids:
        batch = client.retrieve_batch(bid)
        if not is_terminal(batch) and batch.get("status") != "cancelling":
            batch = client.cancel_batch(bid)
            logger.info("cancelled batch %s", bid)
        out.append(batch)
    return out


def cancel_partition(
    client: BatchAPI, asset: str, partition: str | None, *, keep_key: str | None = None
) -> list[dict]:
    """Cancel the live batches of an asset partition (all keys but `keep_key`), via the list."""
    victims = [
        b
        for b in iter_lifecycle_batches(client, asset=asset, partition=partition)
        if not is_terminal(b)
        and b.get("status") != "cancelling"
        and (keep_key is None or (b.get("metadata") or {}).get(META_KEY) != keep_key)
    ]
    return [client.cancel_batch(b["id"]) for b in victims]


# -- collect -----------------------------------------------------------------------------------


@dataclass
class AttemptResult:
    """The joined results of one attempt."""

    attempt: int
    path: str
    counts: dict[str, int]
    unfinished: int
    output_files: list[str]
    error_files: list[str]
    unexpected: int = 0
    duplicates: int = 0
    unexpected_sample: list[str] = field(default_factory=list)


def download_outputs(
    client: BatchAPI, batches: Iterable[Mapping[str, Any]], dest_dir: str | os.PathLike[str]
) -> tuple[list[str], list[str]]:
    """Download each batch's output and error file (when it has one) into `dest_dir`.

    Files are named by the batch's position (``shard-00000-output.jsonl``), never by a string
    the provider chose.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    outputs, errors = [], []
    for n, batch in enumerate(batches):
        for kind, bucket in (("output", outputs), ("error", errors)):
            file_id = batch.get(f"{kind}_file_id")
            if not file_id:
                continue
            path = dest / f"shard-{n:05d}-{kind}.jsonl"
            if not path.exists():
                client.download_file(file_id, path)
            bucket.append(str(path))
    return outputs, errors


def collect(
    client: BatchAPI,
    manifest: SubmissionManifest,
    batches: Mapping[str, Mapping],
    request_files: Sequence[str | os.PathLike[str]],
    work_dir: str | os.PathLike[str],
) -> AttemptResult:
    """Download an attempt's output/error files and join them with its requests on custom_id.

    Every submitted custom_id gets exactly one row (succeeded, failed, errored or missing) in
    ``<work_dir>/results.parquet``.
    """
    from batch_workflows.results import SUCCEEDED, join_results

    work = Path(work_dir)
    ordered = [batches[bid] for bid in manifest.batch_ids]
    not_done = [b["id"] for b in ordered if not is_terminal(b)]
    if not_done:
        raise ConfigurationError(f"cannot collect: batches not terminal yet: {not_done[:5]}")
    outputs, errors = download_outputs(client, ordered, work / "raw")
    out_path = work / "results.parquet"
    result = join_results([str(p) for p in request_files], outputs, errors, out_path=str(out_path))
    counts = {k: v for k, v in result.counts.items() if v}
    unfinished = sum(v for k, v in counts.items() if k != SUCCEEDED)
    return AttemptResult(
        manifest.attempt,
        str(out_path),
        counts,
        unfinished,
        outputs,
        errors,
        result.unexpected,
        result.duplicates,
        list(result.unexpected_sample),
    )


# Request bytes per partition of the retry selection: one partition's ids fit in memory.
RETRY_PARTITION_BYTES = 32 * 1024 * 1024


def _results_rows(results_path: str | os.PathLike[str]) -> Any:
    """A ResultSet over a results Parquet, for streaming its rows (its figures are not read)."""
    from batch_workflows.results import ResultSet

    return ResultSet(os.fspath(results_path), {}, {}, 0, 0, 0, 0, {})


def _bucket(custom_id: str, n: int) -> int:
    return zlib.crc32(custom_id.encode("utf-8", "surrogatepass")) % n


def iter_unfinished_requests(
    request_files: Sequence[str | os.PathLike[str]],
    results_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str] | None = None,
    *,
    partition_bytes: int = RETRY_PARTITION_BYTES,
) -> Iterator[dict]:
    """The request lines whose custom_id did not succeed in `results_path`, streamed.

    Memory stays flat: unless the request files are smaller than `partition_bytes`, the
    unfinished ids (``ResultSet.iter_unfinished_ids``) and the request lines are first spread
    over temporary files by a hash of custom_id, then each partition is matched on its own,
    holding only that partition's ids. Output order: by partition, file order inside one.
    """
    from batch_workflows.requests.shards import iter_requests

    files = [os.fspath(p) for p in request_files]
    unfinished = _results_rows(results_path).iter_unfinished_ids()
    size = sum(os.path.getsize(p) for p in files)
    n = partitions_for(size, partition_bytes)
    if n == 1:  # small enough: the ids of these requests fit in memory as they are
        wanted = set(unfinished)
        if wanted:
            for path in files:
                for request in iter_requests(path):
                    if request.get("custom_id") in wanted:
                        yield request
        return
    tmp = Path(tempfile.mkdtemp(prefix=".retry-", dir=work_dir))
    try:
        id_parts = [open(tmp / f"ids-{i}.jsonl", "wb") for i in range(n)]
        req_parts = [open(tmp / f"req-{i}.jsonl", "wb") for i in range(n)]
        try:
            any_id = False
            for cid in unfinished:
                any_id = True
                id_parts[_bucket(cid, n)].write(orjson.dumps(cid) + b"\n")
            if any_id:
                for path in files:
                    for request in iter_requests(path):
                        cid = str(request.get("custom_id", ""))
                        req_parts[_bucket(cid, n)].write(orjson.dumps(request) + b"\n")
        finally:
            for fh in id_parts + req_parts:
                fh.close()
        for i in range(n):
            with open(tmp / f"ids-{i}.jsonl", "rb") as fh:
                wanted = {orjson.loads(line) for line in fh}
            if not wanted:
                continue
            with open(tmp / f"req-{i}.jsonl", "rb") as fh:
                for line in fh:
                    request = orjson.loads(line)
                    if request.get("custom_id") in wanted:
                        yield request
            del wanted
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_retry_shards(
    request_files: Sequence[str | os.PathLike[str]],
    results_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    profile: Any,
    endpoint: str | None = None,
    *,
    partition_bytes: int = RETRY_PARTITION_BYTES,
    **limits: Any,
) -> Any:
    """Write shards holding exactly the requests that did not succeed in `results_path`.

    Returns the ShardManifest; call it only when something is unfinished (write_shards refuses
    an empty input). Memory stays flat (`iter_unfinished_requests`).
    """
    from batch_workflows.requests.shards import write_shards

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_shards(
        iter_unfinished_requests(request_files, results_path, out.parent,
                                 partition_bytes=partition_bytes),
        str(out),
        profile,
        endpoint=endpoint,
        prefix="retry",
        **{k: v for k, v in limits.items() if v is not None},
    )


# -- merge and summarise -----------------------------------------------------------------------


@dataclass
class Summary:
    """The final figures of a collected submission (what the results asset reports).

    Counts and error breakdown are those of the final rows, tokens and cost those of every
    attempt (all billed); the same figures as ``batch-workflows join`` / ``cost`` give.
    """

    total: int
    counts: dict[str, int]
    error_breakdown: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None
    attempts: int
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: int = 0  # result lines whose custom_id was never submitted (all attempts)
    duplicates: int = 0  # extra result lines for one custom_id (all attempts)

    @property
    def unfinished(self) -> int:
        return self.total - self.counts.get("succeeded", 0)

    @property
    def error_rate(self) -> float:
        return self.unfinished / self.total if self.total else 0.0


def merge_attempts(
    attempt_paths: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]
) -> None:
    """One results Parquet from the attempts of a submission, streamed by row group.

    Attempt n+1 holds exactly the requests that did not succeed in attempt n, so each custom_id
    is taken from the attempt where it succeeded, or from the last attempt.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from batch_workflows.results import SUCCEEDED

    last = len(attempt_paths) - 1
    writer = None
    try:
        for n, path in enumerate(attempt_paths):
            pf = open_parquet(path)
            for batch in pf.iter_batches(batch_size=65536):
                if n != last:
                    batch = batch.filter(pc.equal(batch.column("status"), SUCCEEDED))
                if writer is None:
                    writer = pq.ParquetWriter(str(out_path), pf.schema_arrow)
                if batch.num_rows:
                    writer.write_batch(
                        batch.cast(pf.schema_arrow) if batch.schema != pf.schema_arrow else batch
                    )
        if writer is None:  # no attempts: nothing to merge
            raise ConfigurationError("merge_attempts needs at least one attempt")
    finally:
        if writer is not None:
            writer.close()


def summarize(
    final_path: str | os.PathLike[str],
    attempt_paths: Sequence[str | os.PathLike[str]],
    price_table: Any | None = None,
    *,
    unexpected: int = 0,
    duplicates: int = 0,
) -> Summary:
    """Figures of a submission: `results.ResultSet.from_parquet` and `pricing.cost_of_results`.

    `unexpected` and `duplicates` are the join's counts over all attempts (not in the rows).
    """
    from batch_workflows.pricing import cost_of_results
    from batch_workflows.results import ResultSet

    final = ResultSet.from_parquet(final_path)
    billed = [ResultSet.from_parquet(p) for p in attempt_paths]
    by_model: dict[str, dict[str, int]] = {}
    for rs in billed:
        for model, usage in rs.models.items():
            into = by_model.setdefault(model, {})
            for k, v in usage.items():
                into[k] = into.get(k, 0) + int(v)
    cost: Decimal | None = None
    if price_table is not None:
        try:
            cost = cost_of_results(billed, price_table).usd
        except (LookupError, ValueError, ConfigurationError) as exc:
            logger.warning("cost left out: %s", exc)
    return Summary(
        total=final.total,
        counts={k: v for k, v in final.counts.items() if v},
        error_breakdown=final.error_breakdown,
        prompt_tokens=sum(u.get("prompt_tokens", 0) for u in by_model.values()),
        completion_tokens=sum(u.get("completion_tokens", 0) for u in by_model.values()),
        total_tokens=sum(u.get("total_tokens", 0) for u in by_model.values()),
        cost_usd=cost,
        attempts=len(attempt_paths),
        tokens_by_model=by_model,
        unexpected=unexpected,
        duplicates=duplicates,
    )


def finished_at(batches: Iterable[Mapping[str, Any]]) -> float | None:
    """When the last of some terminal batches finished (unix seconds)."""
    times = [
        b.get(f)
        for b in batches
        for f in ("completed_at", "failed_at", "expired_at", "cancelled_at")
        if isinstance(b.get(f), int | float)
    ]
    return max(times) if times else None


# -- the whole lifecycle, blocking (scripts, notebooks, other orchestrators) -------------------

@dataclass
class Outcome:
    """What `run_to_completion` produced."""

    results_path: str
    summary: Summary
    attempts: list[SubmissionManifest]


def run_to_completion(
    client: BatchAPI,
    shard_paths: Sequence[str | os.PathLike[str]],
    key: str,
    work_dir: str | os.PathLike[str],
    *,
    asset: str,
    partition: str | None,
    endpoint: str,
    profile: Any,
    model: str | None = None,
    max_attempts: int = 3,
    poll_interval: float = 5.0,
    timeout: float | None = None,
    completion_window: str = "24h",
    price_table: Any | None = None,
    on_progress: Callable[[dict[str, dict]], None] | None = None,
) -> Outcome:
    """Submit, wait, collect and resubmit the unfinished requests, up to `max_attempts`.

    Every step re-attaches to what the provider already has (same key, attempt, shard), so
    calling it again after a crash continues where it stopped without paying twice. The final
    Parquet (one row per custom_id) is ``<work_dir>/results.parquet``.
    """
    work = Path(work_dir)
    files = [str(p) for p in shard_paths]
    attempts: list[SubmissionManifest] = []
    parquets: list[str] = []
    unexpected = duplicates = 0
    for n in range(1, max_attempts + 1):
        # A resubmission is created after the attempt before it: bound its list scan.
        after = attempts[-1].created_at - CLOCK_SLACK if attempts else None
        sub = submit(client, files, key, asset=asset, partition=partition, endpoint=endpoint,
                     model=model, attempt=n, completion_window=completion_window,
                     max_in_flight=profile.max_batches_in_flight, poll_interval=poll_interval,
                     created_after=after)
        attempts.append(sub)
        batches = wait(client, sub.batch_ids, poll_interval=poll_interval, timeout=timeout,
                       on_progress=on_progress)
        result = collect(client, sub, batches, files, work / f"attempt-{n}")
        parquets.append(result.path)
        unexpected += result.unexpected
        duplicates += result.duplicates
        cancelled = any(b.get("status") == "cancelled" for b in batches.values())
        if not result.unfinished or n == max_attempts or cancelled:
            break
        retry = write_retry_shards(files, result.path, work / f"attempt-{n + 1}" / "requests",
                                   profile, endpoint=endpoint)
        files = [s.path for s in retry.shards]
        logger.info("attempt %d: resubmitting %d unfinished request(s)", n, result.unfinished)
    final = work / "results.parquet"
    merge_attempts(parquets, final)
    summary = summarize(final, parquets, price_table, unexpected=unexpected,
                        duplicates=duplicates)
    return Outcome(str(final), summary, attempts)
