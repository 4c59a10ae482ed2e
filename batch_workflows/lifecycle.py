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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson

from batch_workflows.errors import BatchTimeoutError, ConfigurationError

logger = logging.getLogger("batch_workflows.lifecycle")

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# A batch in one of these never runs again: a re-submission of its shard is allowed.
DEAD_STATUSES = frozenset({"cancelling", "cancelled"})

# Metadata written on every batch (provider limits: ≤16 pairs, keys ≤64, values ≤512 chars).
META_KEY = "bw_key"  # the submission key (same for every attempt of one submission)
META_ASSET = "bw_asset"
META_PARTITION = "bw_partition"
META_ATTEMPT = "bw_attempt"
META_SHARD = "bw_shard"
META_SHARDS = "bw_shards"
RESERVED_METADATA = (META_KEY, META_ASSET, META_PARTITION, META_ATTEMPT, META_SHARD, META_SHARDS)
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
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
    if len(value) <= MAX_METADATA_VALUE:
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
        if not isinstance(k, str) or not k or len(k) > MAX_METADATA_KEY:
            raise ConfigurationError(f"metadata key {k!r}: must be 1..{MAX_METADATA_KEY} chars")
        if len(str(v)) > MAX_METADATA_VALUE:
            raise ConfigurationError(f"metadata value of {k!r}: over {MAX_METADATA_VALUE} chars")
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


def window_seconds(window: str) -> int:
    """``"24h"`` → 86400; accepts s/m/h/d suffixes."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = window.strip().lower()
    try:
        if text[-1:] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))
    except ValueError:
        raise ConfigurationError(f"completion window {window!r}: expected e.g. '24h'") from None


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


def find_submission(client: BatchAPI, key: str, attempt: int) -> dict[int, dict]:
    """The live batches of one attempt of a submission, by shard index (provider's list)."""
    found: dict[int, dict] = {}
    for batch in iter_lifecycle_batches(client, key=key):
        meta = batch.get("metadata") or {}
        if meta.get(META_ATTEMPT) != str(attempt) or batch.get("status") in DEAD_STATUSES:
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
    horizon = time.time() - window_seconds(completion_window) - 3600
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
    """Block until `needed` more batches fit under `max_in_flight`; returns the in-flight count."""
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
) -> SubmissionManifest:
    """Upload each shard and create one batch per shard, unless it already exists.

    Existing batches are found through the provider's list by their metadata (submission key,
    attempt, shard index), so a re-run after a crash or a re-materialization re-attaches instead
    of paying twice. Cancelled batches are not re-attached to: their shards are submitted again.
    """
    if not shard_paths:
        raise ConfigurationError("nothing to submit: no shards")
    if request_counts is not None and len(request_counts) != len(shard_paths):
        raise ConfigurationError("request_counts must have one entry per shard")
    shards = len(shard_paths)
    existing = find_submission(client, key, attempt)
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
    return SubmissionManifest(
        key, asset, partition, endpoint, model, attempt, completion_window, batches
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


def download_outputs(
    client: BatchAPI, batches: Iterable[Mapping[str, Any]], dest_dir: str | os.PathLike[str]
) -> tuple[list[str], list[str]]:
    """Download each batch's output and error file (when it has one) into `dest_dir`."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    outputs, errors = [], []
    for batch in batches:
        for kind, bucket in (("output", outputs), ("error", errors)):
            file_id = batch.get(f"{kind}_file_id")
            if not file_id:
                continue
            path = dest / f"{batch['id']}-{kind}.jsonl"
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
        getattr(result, "unexpected", 0),
    )


def unfinished_ids(results_path: str | os.PathLike[str]) -> set[str]:
    """custom_ids of a results Parquet that did not succeed (failed, errored, missing)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from batch_workflows.results import SUCCEEDED

    ids: set[str] = set()
    pf = pq.ParquetFile(results_path)
    for batch in pf.iter_batches(columns=["custom_id", "status"], batch_size=65536):
        mask = pc.not_equal(batch.column("status"), SUCCEEDED)
        ids.update(batch.column("custom_id").filter(mask).to_pylist())
    return ids


def write_retry_shards(
    request_files: Sequence[str | os.PathLike[str]],
    ids: set[str],
    out_dir: str | os.PathLike[str],
    profile: Any,
    endpoint: str | None = None,
    **limits: Any,
) -> Any:
    """Write shards holding exactly the requests whose custom_id is in `ids` (a ShardManifest)."""
    from batch_workflows.shards import iter_requests, write_shards

    def selected() -> Iterator[dict]:
        for path in request_files:
            for request in iter_requests(path):
                if request.get("custom_id") in ids:
                    yield request

    return write_shards(
        selected(),
        str(out_dir),
        profile,
        endpoint=endpoint,
        prefix="retry",
        **{k: v for k, v in limits.items() if v is not None},
    )


# -- merge and summarise -----------------------------------------------------------------------


@dataclass
class Summary:
    """The final figures of a collected submission (what the results asset reports)."""

    total: int
    counts: dict[str, int]
    error_breakdown: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None
    attempts: int
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)

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
            pf = pq.ParquetFile(path)
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
) -> Summary:
    """Counts and errors from the final Parquet; tokens and cost over every attempt (all billed)."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    total = 0
    for batch in pq.ParquetFile(final_path).iter_batches(
        columns=["status", "status_code", "error_code"], batch_size=65536
    ):
        rows = batch.to_pydict()
        for status, code, err in zip(
            rows["status"], rows["status_code"], rows["error_code"], strict=True
        ):
            total += 1
            counts[status] = counts.get(status, 0) + 1
            if status != "succeeded":
                label = err or (f"http_{code}" if code else status)
                errors[label] = errors.get(label, 0) + 1
    by_model: dict[str, dict[str, int]] = {}
    for path in attempt_paths:
        for batch in pq.ParquetFile(path).iter_batches(
            columns=["model", "prompt_tokens", "completion_tokens", "total_tokens"],
            batch_size=65536,
        ):
            rows = batch.to_pydict()
            for model, p, c, t in zip(
                rows["model"],
                rows["prompt_tokens"],
                rows["completion_tokens"],
                rows["total_tokens"],
                strict=True,
            ):
                if not (p or c or t):
                    continue
                m = by_model.setdefault(model or "", {"prompt": 0, "completion": 0, "total": 0})
                m["prompt"] += int(p or 0)
                m["completion"] += int(c or 0)
                m["total"] += int(t or (p or 0) + (c or 0))
    cost: Decimal | None = None
    if price_table is not None:
        cost = Decimal("0")
        for model, t in by_model.items():
            try:
                cost += Decimal(price_table.cost(model, t["prompt"], t["completion"], batch=True))
            except (KeyError, LookupError, ValueError, ConfigurationError):
                logger.warning("no price for model %r: cost left out", model)
                cost = None
                break
    return Summary(
        total=total,
        counts=counts,
        error_breakdown=errors,
        prompt_tokens=sum(m["prompt"] for m in by_model.values()),
        completion_tokens=sum(m["completion"] for m in by_model.values()),
        total_tokens=sum(m["total"] for m in by_model.values()),
        cost_usd=cost,
        attempts=len(attempt_paths),
        tokens_by_model=by_model,
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
    for n in range(1, max_attempts + 1):
        sub = submit(client, files, key, asset=asset, partition=partition, endpoint=endpoint,
                     model=model, attempt=n, completion_window=completion_window,
                     max_in_flight=profile.max_batches_in_flight, poll_interval=poll_interval)
        attempts.append(sub)
        batches = wait(client, sub.batch_ids, poll_interval=poll_interval, timeout=timeout,
                       on_progress=on_progress)
        result = collect(client, sub, batches, files, work / f"attempt-{n}")
        parquets.append(result.path)
        cancelled = any(b.get("status") == "cancelled" for b in batches.values())
        if not result.unfinished or n == max_attempts or cancelled:
            break
        retry = write_retry_shards(files, unfinished_ids(result.path),
                                   work / f"attempt-{n + 1}" / "requests", profile,
                                   endpoint=endpoint)
        files = [s.path for s in retry.shards]
        logger.info("attempt %d: resubmitting %d unfinished request(s)", n, result.unfinished)
    final = work / "results.parquet"
    merge_attempts(parquets, final)
    return Outcome(str(final), summarize(final, parquets, price_table), attempts)
