"""Batches the provider refused for capacity: created again, in the same attempt.

A batch that ends ``failed`` with a capacity code (``failures.DECISIONS``: the enqueued-token
quota was full, the queue was) ran none of its requests. Its shard is created again after a
backoff, once its tokens fit (``submit.Creator``), with a new idempotency key and the same
attempt number: waiting for capacity never spends one of ``Policy.max_attempts``. It goes on
until the attempt's capacity deadline (``Policy.capacity_deadline`` after the attempt was
submitted); past it the refusals are reported as they are, with the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from batch_workflows.lifecycle.failures import CAPACITY, BatchFailure, batch_failure
from batch_workflows.lifecycle.manifests import RequestPointer, SubmissionManifest, SubmittedBatch
from batch_workflows.lifecycle.policy import Policy
from batch_workflows.lifecycle.provider import BatchAPI, forget_file
from batch_workflows.lifecycle.submit import MAX_CAPACITY_BACKOFF, Creator


def refused(sub: SubmissionManifest,
            batches: Mapping[str, dict]) -> list[tuple[SubmittedBatch, BatchFailure]]:
    """The attempt's batches that failed for capacity, with their failure."""
    out = []
    for sb in sub.batches:
        failure = batch_failure(batches[sb.batch_id], shard=sb.shard)
        if failure is not None and failure.decision == CAPACITY:
            out.append((sb, failure))
    return out


def deadline_passed(sub: SubmissionManifest, policy: Policy) -> bool:
    limit = policy.capacity_deadline
    return limit is not None and time.time() >= sub.created_at + limit


def deadline_note(policy: Policy) -> str:
    return f"capacity deadline of {policy.capacity_deadline:g}s reached; not created again"


def create_again(client: BatchAPI, pointer: RequestPointer, policy: Policy,
                 sub: SubmissionManifest, refusals: Sequence[tuple[SubmittedBatch, BatchFailure]],
                 paths: Sequence[Path], *, blocking: bool, log: object,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Create each refused shard again (in `sub`, updated in place), after a backoff.

    Blocking, it sleeps ``poll_interval * 2**n`` (n: the shard's refusals so far, capped)
    first; a sensor-driven run creates at once (its next run comes a sensor tick later).
    """
    limit = policy.capacity_deadline
    end = None if limit is None else sub.created_at + limit
    for sb, failure in refusals:
        retry = len(sb.replaced) + 1
        remaining = None if end is None else max(0.0, end - time.time())
        if blocking:
            delay = min(policy.poll_interval * 2 ** retry, MAX_CAPACITY_BACKOFF)
            sleep(delay if remaining is None else min(delay, remaining))
        log.info(f"{failure.describe()}; creating shard {sb.shard} again when it fits "  # type: ignore[attr-defined]
                 f"(capacity retry {retry}, not an attempt)")
        creator = Creator(client, pointer.key, pointer.asset, pointer.partition,
                          pointer.endpoint, sub.attempt, len(sub.batches), pointer.model,
                          policy.completion_window, policy.metadata, policy.extra_body,
                          policy.namespace, policy.token_limit(pointer.model),
                          policy.poll_interval, remaining)
        batch, _ = creator.create(sb.shard, paths[sb.shard], retry)
        if policy.delete_input_files and sb.input_file_id:
            forget_file(client, sb.input_file_id)  # the refused batch is over and ran nothing
        sb.replaced.append(sb.batch_id)
        sb.batch_id, sb.input_file_id = batch["id"], batch.get("input_file_id", "")
