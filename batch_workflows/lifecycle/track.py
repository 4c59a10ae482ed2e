"""Tracking batches: their state, waiting for them, cancelling them, and the sensor's pass.

``track_batches`` is the body of a tracking sensor as plain data: one scan of the provider's
list from a watermark in the cursor, the progress to report per partition, the partitions
whose batches are all terminal (ready to collect), those where some batches have ended
while others run (their files are stored at once by a results run: ``fetch``), and those with
shards still waiting for room under the quota when batches end (``admit``: a batch run
creates what now fits).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batch_workflows.errors import BatchTimeoutError
from batch_workflows.lifecycle.keys import META_ATTEMPT, META_KEY, META_PARTITION, META_SHARDS
from batch_workflows.lifecycle.namespace import Owner
from batch_workflows.lifecycle.provider import (
    BatchAPI,
    iter_lifecycle_batches,
    live_since,
    logger,
)
from batch_workflows.wire import is_live, is_terminal


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
        if (created_after is not None and isinstance(created, int | float)
                and created < created_after):
            break
    for bid in wanted - found.keys():
        found[bid] = client.retrieve_batch(bid)
    return found


@dataclass
class Progress:
    """Aggregate status and ``request_counts`` of some batches (for logs and observations)."""

    statuses: dict[str, int]
    total: int
    completed: int
    failed: int

    @property
    def terminal(self) -> bool:
        return bool(self.statuses) and all(is_terminal({"status": s}) for s in self.statuses)

    def describe(self) -> str:
        return f"{self.statuses} {self.completed}/{self.total} completed, {self.failed} failed"


def progress(batches: Iterable[Mapping[str, Any]]) -> Progress:
    """The aggregate progress of some batches."""
    p = Progress({}, 0, 0, 0)
    for b in batches:
        status = b.get("status", "unknown")
        p.statuses[status] = p.statuses.get(status, 0) + 1
        counts = b.get("request_counts") or {}
        p.total += int(counts.get("total") or 0)
        p.completed += int(counts.get("completed") or 0)
        p.failed += int(counts.get("failed") or 0)
    return p


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
            raise BatchTimeoutError(
                f"{len(batch_ids)} batch(es) not terminal after {timeout:g}s: "
                f"{progress(batches.values()).statuses}"
            )
        sleep(poll_interval)


def cancel(client: BatchAPI, batch_ids: Iterable[str]) -> list[dict]:
    """Cancel every batch that is still live; returns the batches as the provider left them."""
    out = []
    for bid in batch_ids:
        batch = client.retrieve_batch(bid)
        if is_live(batch):
            batch = client.cancel_batch(bid)
            logger.info("cancelled batch %s", bid)
        out.append(batch)
    return out


def cancel_partition(
    client: BatchAPI, asset: str, partition: str | None, *, keep_key: str | None = None,
    owner: Owner | None = None, completion_window: str = "24h",
) -> list[dict]:
    """Cancel the live batches of an asset partition (all keys but `keep_key`), via the list
    back to the oldest a live batch can be (``live_since``); only `owner`'s (this deployment's)
    when given."""
    victims = [
        b
        for b in iter_lifecycle_batches(client, asset=asset, partition=partition, owner=owner,
                                        created_after=live_since(completion_window))
        if is_live(b) and (keep_key is None or (b.get("metadata") or {}).get(META_KEY) != keep_key)
    ]
    return [client.cancel_batch(b["id"]) for b in victims]


def finished_at(batches: Iterable[Mapping[str, Any]]) -> float | None:
    """When the last of some terminal batches finished (unix seconds)."""
    times = [
        b.get(f)
        for b in batches
        for f in ("completed_at", "failed_at", "expired_at", "cancelled_at")
        if isinstance(b.get(f), int | float)
    ]
    return max(times) if times else None


# -- the tracking sensor's pass ------------------------------------------------------------------

@dataclass
class Observation:
    """The progress of a partition's current submission, to report."""

    partition: str | None  # the partition tag as written in batch metadata
    submission_key: str
    attempt: int
    batches: int
    progress: Progress


# A partition whose batches end one by one gets a run storing the files of those that ended at
# most this often (seconds): each ended batch's files are in the store within this time, and a
# partition of hundreds of batches does not start a run per batch.
FETCH_INTERVAL = 300.0


@dataclass
class Tick:
    """What one tracking pass found."""

    cursor: str
    observations: list[Observation]
    ready: list[tuple[str | None, str]]  # (partition tag, "key16:attempt") all terminal
    in_flight: int
    scanned: int
    # (partition tag, "key16:attempt", "ended-<n>"): some batches ended, others still run
    fetch: list[tuple[str | None, str, str]] = field(default_factory=list)
    # (partition tag, "key16:attempt", "admit-<n>"): shards still without a batch (deferred
    # for the quota) and more of the submission's batches ended: room to create more
    admit: list[tuple[str | None, str, str]] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.in_flight} batch(es) in flight; nothing new (scanned {self.scanned})"


def track_batches(client: BatchAPI, name: str, cursor: str | None, *,
                  horizon_seconds: float = 86400.0, now: float | None = None,
                  owner: Owner | None = None, fetch_interval: float = FETCH_INTERVAL) -> Tick:
    """One tracking pass over the provider's list (newest first), from the cursor's watermark;
    only `owner`'s batches (this deployment's) when given.

    The cursor holds ``since`` (the oldest creation time still of interest), the last reported
    progress per partition, the submission/attempt already handed to a results run, and per
    partition the ended batches already handed to a fetching run (and when), so that one goes
    out when more have ended, at most every `fetch_interval` seconds.
    """
    state = json.loads(cursor) if cursor else {}
    since = state.get("since")
    seen: dict[str, str] = state.get("seen", {})
    requested: dict[str, str] = state.get("requested", {})
    fetched: dict[str, list] = state.get("fetched", {})  # part → [marker, ended, at]
    admitted: dict[str, list] = state.get("admitted", {})  # part → [marker, ended, at]
    now = time.time() if now is None else now
    floor = now - horizon_seconds - 3600  # older batches are terminal (``live_since``)
    created_after = max(since, floor) if since is not None else floor

    groups, newest, scanned = _group_by_submission(client, name, created_after, owner)
    observations: list[Observation] = []
    ready: list[tuple[str | None, str]] = []
    fetch: list[tuple[str | None, str, str]] = []
    admit: list[tuple[str | None, str, str]] = []
    pending_since: list[float] = []
    in_flight = 0
    for part, keys in groups.items():
        # The current submission is the one created last; within it, the last attempt.
        key = max(keys, key=lambda k: max(_created(b) for a in keys[k].values() for b in a))
        attempt = max(keys[key])
        batches = keys[key][attempt]
        expected = max(int((b.get("metadata") or {}).get(META_SHARDS, "1")) for b in batches)
        p = progress(batches)
        in_flight += sum(1 for b in batches if not is_terminal(b))
        marker = f"{key[:16]}:{attempt}"
        if len(batches) > expected:  # shards created again (capacity, cancel): a new results run
            marker += f"+{len(batches) - expected}"
        digest = f"{marker}:{sorted(p.statuses.items())}:{p.completed}:{p.failed}"
        if seen.get(part) != digest:
            seen[part] = digest
            observations.append(Observation(part or None, key, attempt, len(batches), p))
        created = len(batches) >= expected  # every shard has its batch (none deferred)
        done = p.terminal and created
        if done and requested.get(part) != marker:
            requested[part] = marker
            ready.append((part or None, marker))
        ended = sum(1 for b in batches if is_terminal(b))
        if not created:
            if ended and _due(admitted.get(part), marker, ended, now, 0.0):
                admitted[part] = [marker, ended, now]
                admit.append((part or None, marker, f"admit-{ended}"))
        elif not done and ended and _due(fetched.get(part), marker, ended, now,
                                               fetch_interval):
            fetched[part] = [marker, ended, now]
            fetch.append((part or None, marker, f"ended-{ended}"))
        if not done:  # keep every batch of this submission in the next scans
            pending_since.extend(_created(b) for a in keys[key].values() for b in a)

    new_since = min(pending_since) if pending_since else newest if newest is not None else since
    # Partitions older than the new watermark will not be scanned again: forget them.
    state = {
        "since": new_since,
        "seen": {p: d for p, d in seen.items() if p in groups},
        "requested": {p: m for p, m in requested.items() if p in groups},
        "fetched": {p: f for p, f in fetched.items() if p in groups},
        "admitted": {p: a for p, a in admitted.items() if p in groups},
    }
    return Tick(json.dumps(state, separators=(",", ":")), observations, ready, in_flight, scanned,
                fetch, admit)


def _due(last: list | None, marker: str, ended: int, now: float, interval: float) -> bool:
    """Whether batches ended since the last run asked for this attempt, and it is time."""
    if not last or last[0] != marker:
        return True
    return ended > last[1] and now - last[2] >= interval


def _created(batch: Mapping[str, Any]) -> float:
    return batch.get("created_at") or 0


def _group_by_submission(
    client: BatchAPI, name: str, created_after: float, owner: Owner | None
) -> tuple[dict[str, dict[str, dict[int, list[dict]]]], float | None, int]:
    """partition tag → submission key → attempt → batches; the newest creation time; scanned."""
    groups: dict[str, dict[str, dict[int, list[dict]]]] = {}
    scanned = 0
    newest = None
    for batch in iter_lifecycle_batches(client, asset=name, created_after=created_after,
                                        owner=owner):
        scanned += 1
        meta = batch.get("metadata") or {}
        newest = _created(batch) if newest is None else max(newest, _created(batch))
        try:
            attempt = int(meta.get(META_ATTEMPT, "1"))
        except ValueError:
            continue
        part = meta.get(META_PARTITION, "")
        groups.setdefault(part, {}).setdefault(meta[META_KEY], {}).setdefault(attempt, []).append(batch)
    return groups, newest, scanned
