"""Submitting: upload each shard and create one batch per shard, unless it already exists."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle.keys import batch_metadata, shard_idempotency_key
from batch_workflows.lifecycle.manifests import SubmissionManifest, SubmittedBatch
from batch_workflows.lifecycle.provider import (
    CLOCK_SLACK,
    BatchAPI,
    find_submission,
    logger,
    wait_for_capacity,
)


def _count_lines(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


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
        wait_for_capacity(client, len(missing), max_in_flight,
                          completion_window=completion_window, poll_interval=poll_interval,
                          timeout=capacity_timeout, sleep=sleep)
    batches = []
    for i, path in enumerate(shard_paths):
        count = request_counts[i] if request_counts is not None else _count_lines(path)
        if i in existing:
            batch = existing[i]
            batches.append(SubmittedBatch(i, batch["id"], batch.get("input_file_id", ""), count,
                                          reattached=True, input_path=str(path)))
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
        batches.append(SubmittedBatch(i, batch["id"], batch.get("input_file_id", uploaded["id"]),
                                      count, reattached=reattached, input_path=str(path)))
        logger.info("created batch %s for shard %d/%d of %s (attempt %d)",
                    batch["id"], i + 1, shards, asset, attempt)
    # When the submission started: the oldest batch re-attached to, else now.
    times = [b.get("created_at") for b in existing.values()]
    started_at = min([t for t in times if isinstance(t, int | float)] + [time.time()])
    return SubmissionManifest(key, asset, partition, endpoint, model, attempt, completion_window,
                              batches, started_at)
