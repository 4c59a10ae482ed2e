"""The provider's side of the lifecycle: the Batch API it calls, and reading its batch list.

State lives at the provider: every batch carries the submission key, asset, partition,
attempt and shard index in its ``metadata``, so one paginated scan of the list finds what a
submission already has there, and how many batches are in flight.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from batch_workflows.client import is_reattachable
from batch_workflows.errors import BatchTimeoutError, ConfigurationError, ProviderError
from batch_workflows.lifecycle.keys import (
    META_ASSET,
    META_ATTEMPT,
    META_KEY,
    META_PARTITION,
    META_SHARD,
    metadata_value,
    partition_tag,
)
from batch_workflows.lifecycle.namespace import Owner
from batch_workflows.wire import is_terminal, parse_duration

logger = logging.getLogger("batch_workflows.lifecycle")

# Seconds subtracted from our clock when bounding list scans by creation time (clock skew).
CLOCK_SLACK = 300


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
    def delete_file(self, file_id: str) -> dict: ...


def forget_file(client: BatchAPI, file_id: str) -> bool:
    """Delete a file at the provider that nothing needs any more (an input file whose batch is
    over and collected, or that no batch will use). Best effort: a file left behind costs
    storage, never results, so a refusal is logged, not raised. True when deleted."""
    try:
        client.delete_file(file_id)
        return True
    except (ProviderError, OSError) as exc:
        logger.warning("could not delete file %s at the provider: %s", file_id, exc)
        return False


def older_than(batch: Mapping[str, Any], moment: float | None) -> bool:
    created = batch.get("created_at")
    return moment is not None and isinstance(created, int | float) and created < moment


def live_since(completion_window: str = "24h", now: float | None = None) -> float:
    """The oldest creation time a live batch can have: one older than its completion window
    (and an hour's grace for finalizing) is terminal by definition, so list scans for live
    batches stop there instead of reading the account's whole history."""
    return (time.time() if now is None else now) - parse_duration(completion_window) - 3600


def iter_lifecycle_batches(
    client: BatchAPI,
    *,
    asset: str | None = None,
    partition: str | None = None,
    key: str | None = None,
    created_after: float | None = None,
    owner: Owner | None = None,
) -> Iterator[dict]:
    """Batches created by the lifecycle, newest first, filtered on their metadata.

    One paginated scan of the provider's list; stops at batches older than `created_after`.
    With `owner`, only this deployment's batches (``namespace.Owner``); without, every
    deployment's (the quota, which the whole account shares, counts them all).
    """
    for batch in client.list_batches(limit=100):
        if older_than(batch, created_after):
            return
        meta = batch.get("metadata") or {}
        if META_KEY not in meta:
            continue
        if asset is not None and meta.get(META_ASSET) != metadata_value(asset):
            continue
        if partition is not None and meta.get(META_PARTITION) != partition_tag(partition):
            continue
        if key is not None and meta.get(META_KEY) != key:
            continue
        if owner is not None and not owner.owns(batch):
            continue
        yield batch


def find_submission(
    client: BatchAPI, key: str, attempt: int, *, created_after: float | None = None,
    owner: Owner | None = None,
) -> dict[int, dict]:
    """The batches of one attempt of a submission, by shard index (one scan of the list).

    Every batch counts but one cancelled before it completed anything (the client's
    `is_reattachable`, the one re-attach rule). `created_after` stops the scan early when the
    caller knows a lower bound.
    """
    found: dict[int, dict] = {}
    for batch in iter_lifecycle_batches(client, key=key, created_after=created_after,
                                        owner=owner):
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
    horizon = live_since(completion_window)
    count = 0
    for batch in client.list_batches(limit=100):
        if older_than(batch, horizon):
            break
        if not is_terminal(batch):
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

    Check-then-act: safe when submissions to the provider are serialised (the Dagster assets
    run them in a concurrency pool of one slot); otherwise two callers may both see room and
    overshoot the limit together.
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
        logger.info("%d batches in flight (max %d); waiting for room for %d",
                    in_flight, max_in_flight, needed)
        sleep(poll_interval)
