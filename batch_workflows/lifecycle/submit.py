"""Submitting: upload each shard and create one batch per shard, unless it already exists.

Creates wait for room first: under the in-flight cap (``wait_for_capacity``) and, where the
provider has an enqueued-token quota, for the shard's tokens (``quota.wait_for_tokens``); a
create the provider still refuses with 429 is capacity too: waited for, never an attempt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batch_workflows.errors import BatchTimeoutError, ConfigurationError, RateLimitError
from batch_workflows.lifecycle.keys import batch_metadata, shard_idempotency_key
from batch_workflows.lifecycle.manifests import SubmissionManifest, SubmittedBatch
from batch_workflows.lifecycle.namespace import Owner
from batch_workflows.lifecycle.provider import (
    CLOCK_SLACK,
    BatchAPI,
    count_in_flight,
    find_submission,
    forget_file,
    logger,
    wait_for_capacity,
)
from batch_workflows.lifecycle.quota import wait_for_tokens
from batch_workflows.pricing import estimate_input_tokens
from batch_workflows.wire import is_live

# Longest pause between two creates refused with 429 (the client has already retried each).
MAX_CAPACITY_BACKOFF = 600.0


def _count_lines(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


@dataclass
class Creator:
    """Creates the batches of one attempt of a submission, each when there is room for it."""

    client: BatchAPI
    key: str
    asset: str
    partition: str | None
    endpoint: str
    attempt: int
    shards: int
    model: str | None = None
    completion_window: str = "24h"
    metadata: Mapping[str, str] | None = None
    extra_body: Mapping[str, Any] | None = None
    namespace: str | None = None
    token_limit: int | None = None
    poll_interval: float = 5.0
    timeout: float | None = None  # for room under the quota, and for creates refused with 429
    sleep: Callable[[float], None] = time.sleep
    started: int = field(default_factory=lambda: int(time.time()) - CLOCK_SLACK)

    def create(self, shard: int, path: str | os.PathLike[str],
               retry: int = 0, *, wait: bool = True) -> tuple[dict, bool] | None:
        """Upload shard `shard` and create its batch (`retry` > 0: again, after the provider
        refused an earlier one for capacity; a new idempotency key, the same attempt).

        Returns the batch and whether it already existed (the client re-attached to it after
        an ambiguous failure); None when `wait` is off and its tokens do not fit under the
        quota now (nothing uploaded or created)."""
        tokens = None
        if self.token_limit and self.model:
            tokens = estimate_input_tokens(path)
            try:
                wait_for_tokens(self.client, self.model, tokens, self.token_limit,
                                completion_window=self.completion_window,
                                poll_interval=self.poll_interval,
                                timeout=self.timeout if wait else 0.0, sleep=self.sleep)
            except BatchTimeoutError:
                if wait:
                    raise
                return None
        uploaded = self.client.upload_file(path)
        idem = shard_idempotency_key(self.key, self.attempt, shard)
        meta = batch_metadata(self.key, self.asset, self.partition, self.attempt, shard,
                              self.shards, self.metadata, namespace=self.namespace,
                              tokens=tokens, model=self.model if tokens is not None else None)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        refusals = 0
        while True:
            try:
                batch = self.client.create_batch(
                    uploaded["id"], self.endpoint, self.completion_window, metadata=meta,
                    extra_body=self.extra_body,
                    idempotency_key=idem + (f":r{retry}" if retry else ""),
                    created_after=self.started,
                    look_first=False,  # looked before; the client looks again after an
                )                      # ambiguous failure
                return batch, batch.get("input_file_id") not in (None, uploaded["id"])
            except RateLimitError as exc:
                refusals += 1
                delay = min(self.poll_interval * 2 ** refusals, MAX_CAPACITY_BACKOFF)
                if deadline is not None and time.monotonic() + delay > deadline:
                    forget_file(self.client, uploaded["id"])
                    raise BatchTimeoutError(
                        f"creating the batch of shard {shard} of {self.asset} was refused "
                        f"{refusals} time(s) for capacity (HTTP 429); capacity deadline of "
                        f"{self.timeout:g}s reached: {exc}") from None
                logger.warning("create of shard %d refused for capacity (HTTP 429); waiting "
                               "%.1fs (not an attempt)", shard, delay)
                self.sleep(delay)


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
    namespace: str | None = None,
    owner: Owner | None = None,
    token_limit: int | None = None,
    defer: bool = False,
) -> SubmissionManifest:
    """Upload each shard and create one batch per shard, unless it already exists.

    Existing batches are found through the provider's list by their metadata (submission key,
    attempt, shard index; only `owner`'s when given) in one scan (bounded by `created_after`
    when given), so a re-run after a crash or a re-materialization re-attaches instead of
    paying twice. A batch cancelled before completing anything is not re-attached to (its
    shard is submitted again); one cancelled part way is (``client.is_reattachable``).
    A caller that looked already passes `existing` (``find_submission``'s answer); the paths of
    those shards are then never read. With `token_limit` (and `model`), each shard is created
    only once its estimated input tokens fit under the limit beside what is enqueued, so a
    partition larger than the quota is created in waves as earlier batches finish.

    `defer` (non-blocking runs): while a batch of this submission is live, a shard with no
    room now (quota or in-flight cap) is not waited for; it and the shards after it are left
    out of the returned manifest, to be created by a later call once batches end (the
    tracking sensor asks for one). With none live, the first shard still waits for room, so
    every submission has a batch whose end brings the next call.
    """
    if not shard_paths:
        raise ConfigurationError("nothing to submit: no shards")
    if request_counts is not None and len(request_counts) != len(shard_paths):
        raise ConfigurationError("request_counts must have one entry per shard")
    shards = len(shard_paths)
    creator = Creator(client, key, asset, partition, endpoint, attempt, shards, model,
                      completion_window, metadata, extra_body, namespace, token_limit,
                      poll_interval, capacity_timeout, sleep)
    if existing is None:
        existing = find_submission(client, key, attempt, created_after=created_after,
                                   owner=owner)
    missing = [i for i in range(shards) if i not in existing]
    live = any(is_live(b) for b in existing.values())
    room = len(missing)  # creates allowed under the in-flight cap
    if missing and max_in_flight:
        if not (defer and live):  # with deferring, room for one is enough to go on
            wait_for_capacity(client, 1 if defer else len(missing), max_in_flight,
                              completion_window=completion_window, poll_interval=poll_interval,
                              timeout=capacity_timeout, sleep=sleep)
        if defer:  # with none of ours live, the one just waited for is ours (a race may
            # fill it: then the provider's 429 is the backstop, never a partition left with
            # no batch to bring the next run)
            room = max(0 if live else 1,
                       max_in_flight - count_in_flight(client, completion_window))
    batches = []
    deferring = False
    for i, path in enumerate(shard_paths):
        count = request_counts[i] if request_counts is not None else _count_lines(path)
        if i in existing:
            batch = existing[i]
            batches.append(SubmittedBatch(i, batch["id"], batch.get("input_file_id", ""), count,
                                          reattached=True, input_path=str(path)))
            continue
        made = None if deferring or room <= 0 else creator.create(i, path,
                                                                   wait=not (defer and live))
        if made is None:  # no room now: this shard and the later ones wait for a later call
            deferring = True
            continue
        batch, reattached = made
        room -= 1
        live = True
        batches.append(SubmittedBatch(i, batch["id"], batch.get("input_file_id", ""), count,
                                      reattached=reattached, input_path=str(path)))
        logger.info("created batch %s for shard %d/%d of %s (attempt %d)",
                    batch["id"], i + 1, shards, asset, attempt)
    # When the submission started: the oldest batch re-attached to, else now.
    times = [b.get("created_at") for b in existing.values()]
    started_at = min([t for t in times if isinstance(t, int | float)] + [time.time()])
    return SubmissionManifest(key, asset, partition, endpoint, model, attempt, completion_window,
                              batches, started_at)
