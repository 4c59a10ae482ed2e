"""Admission within a provider's enqueued-token quota (OpenAI's "batch queue limit").

The quota is per organisation and model: the input tokens of every batch not yet finished.
Each batch the lifecycle creates carries its estimated input tokens and its model in its
metadata (``bw_tokens``, ``bw_model``; the estimate is the budget's, ``pricing``), so one scan
of the provider's list tells what is enqueued — by every deployment on the account, not only
this one. A shard is created only when it fits beside them; shards are cut so that several fit
at once (``shard_token_cap``), so a partition larger than the quota runs in waves, each shard
entering as earlier batches finish.

What this scan cannot see (batches made by other tools) can still make the provider refuse a
batch with ``token_limit_exceeded``: ``failures`` classes that as capacity, and the lifecycle
waits and creates the shard again without spending an attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from batch_workflows.errors import BatchTimeoutError, ConfigurationError
from batch_workflows.lifecycle.keys import META_MODEL, META_TOKENS, metadata_value
from batch_workflows.lifecycle.provider import BatchAPI, live_since, logger, older_than
from batch_workflows.wire import is_terminal

# Shards per quota: a shard holds at most a quarter of the limit, so four run at once and the
# next enters as soon as one finishes (one shard the size of the quota would run alone).
SHARDS_PER_QUOTA = 4


def shard_token_cap(limit: int | None) -> int | None:
    """The most estimated input tokens one shard may hold under an enqueued-token `limit`."""
    return None if not limit else max(1, limit // SHARDS_PER_QUOTA)


def enqueued_tokens(client: BatchAPI, model: str, completion_window: str = "24h") -> int:
    """Estimated input tokens of the lifecycle's unfinished batches of `model`, all deployments.

    The scan stops at batches older than the completion window (terminal by definition)."""
    horizon = live_since(completion_window)
    tag = metadata_value(model)
    total = 0
    for batch in client.list_batches(limit=100):
        if older_than(batch, horizon):
            break
        meta = batch.get("metadata") or {}
        if is_terminal(batch) or meta.get(META_MODEL) != tag:
            continue
        try:
            total += int(meta.get(META_TOKENS, "0"))
        except ValueError:
            continue
    return total


def wait_for_tokens(
    client: BatchAPI,
    model: str,
    needed: int,
    limit: int,
    *,
    completion_window: str = "24h",
    poll_interval: float = 5.0,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Block until `needed` more tokens of `model` fit under `limit`; returns what is enqueued.

    Check-then-act, like ``wait_for_capacity``: exact when submissions to the provider are
    serialised (one concurrency slot); otherwise the provider's own refusal is the backstop.
    """
    if needed > limit:
        raise ConfigurationError(
            f"a shard of ~{needed:,} input tokens of {model} can never fit under the enqueued-"
            f"token limit of {limit:,}: write the partition's requests again (shards are cut to "
            f"{shard_token_cap(limit):,} tokens under this limit) or raise the limit")
    deadline = None if timeout is None else time.monotonic() + timeout
    reported = None
    while True:
        enqueued = enqueued_tokens(client, model, completion_window)
        if enqueued + needed <= limit:
            return enqueued
        if deadline is not None and time.monotonic() >= deadline:
            raise BatchTimeoutError(
                f"~{enqueued:,} tokens of {model} enqueued; no room for ~{needed:,} more under "
                f"the limit of {limit:,} after {timeout:g}s")
        if reported != enqueued:
            reported = enqueued
            logger.info("~%d tokens of %s enqueued (limit %d): waiting for room for ~%d",
                        enqueued, model, limit, needed)
        sleep(poll_interval)
