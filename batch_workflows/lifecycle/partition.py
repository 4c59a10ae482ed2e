"""A partition's lifecycle over a store: write its requests, submit them, collect the results
with bounded resubmission, and publish the final Parquet and summary.

This is the only implementation of the loop. The Dagster assets call these functions step by
step (one asset each); ``run_to_completion`` calls them in one go for a script. Everything a
later step needs is in the store (``layout.PartitionLayout``) or at the provider (batch
metadata), so each step can run in another process, after a crash, or again.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow.parquet as pq

from batch_workflows.client import is_reattachable
from batch_workflows.errors import BudgetExceededError, ConfigurationError, NotFoundError
from batch_workflows.lifecycle import capacity
from batch_workflows.lifecycle.collect import (
    collect,
    iter_unfinished_ids,
    merge_attempts,
    summarize,
    unfinished_sample,
    write_retry_shards,
)
from batch_workflows.lifecycle.failures import CAPACITY, INPUT, STOP, BatchFailure, batch_failure
from batch_workflows.lifecycle.fetch import fetching, prefetched, store_terminal
from batch_workflows.lifecycle.keys import partition_tag, submission_key
from batch_workflows.lifecycle.layout import AttemptLayout, PartitionLayout, partition_index_key
from batch_workflows.lifecycle.manifests import (
    JoinFigures,
    RequestPointer,
    ShardRecord,
    SubmissionManifest,
    Summary,
)
from batch_workflows.lifecycle.namespace import Owner
from batch_workflows.lifecycle.policy import Policy
from batch_workflows.lifecycle.provider import (
    CLOCK_SLACK,
    BatchAPI,
    find_submission,
    forget_file,
    live_since,
    logger,
)
from batch_workflows.lifecycle.quota import shard_token_cap
from batch_workflows.lifecycle.storage import Storage
from batch_workflows.lifecycle.submit import submit
from batch_workflows.lifecycle.track import (
    cancel,
    cancel_partition,
    finished_at,
    progress,
    snapshot,
    wait,
)
from batch_workflows.requests import write_shards
from batch_workflows.results import SUCCEEDED, ResultSet
from batch_workflows.results.schema import SCHEMA as RESULTS_SCHEMA
from batch_workflows.wire import BatchRequest, is_terminal

SAMPLE_ROWS = 20
EMPTY_CONTENT = "empty"  # the content hash of a partition without requests


class Log(Protocol):
    """Where progress lines go: a ``logging.Logger``, or Dagster's ``context.log``."""

    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...


# -- requests -------------------------------------------------------------------------------------

def write_requests(
    store: Storage,
    name: str,
    partition: str | None,
    endpoint: str,
    requests: Iterable[Mapping[str, Any] | BatchRequest],
    profile: Any,
    params: Mapping[str, Any] | None = None,
    *,
    allow_empty: bool = False,
    namespace: str | None = None,
) -> RequestPointer:
    """Validate and shard a partition's requests, store the shards and the request pointer.

    Every line is validated before anything is stored (InvalidInputError with file, line and
    reason). `params` (settings not visible in the lines) and `namespace` (the deployment's)
    enter the submission key. Where `profile` has an enqueued-token quota for the model,
    shards are cut so that several fit under it (``quota.shard_token_cap``). With
    `allow_empty`, a partition without requests (a day with no backlog) is valid: its pointer
    has no shards, nothing is submitted and its results are an empty table.
    """
    layout = PartitionLayout(name, partition)
    requests = iter(requests)
    first = next(requests, None)
    if first is None and allow_empty:
        key, ns = _key(store, layout, (name, partition, endpoint, EMPTY_CONTENT, None, params),
                       namespace)
        pointer = RequestPointer(key, name, partition, endpoint, None, dict(params or {}),
                                 EMPTY_CONTENT, 0, [], ns)
        store.write_bytes(layout.pointer, pointer.to_json())
        return pointer
    cap = shard_token_cap(profile.enqueued_token_limit(_model_of(first)))
    requests = itertools.chain([] if first is None else [first], requests)
    with tempfile.TemporaryDirectory(prefix="bw-shards-") as tmp:
        manifest = write_shards(requests, tmp, profile, endpoint=endpoint,
                                max_tokens_per_file=cap)
        if not manifest.shards:
            raise ConfigurationError(f"{name}: no requests for partition {partition!r}")
        key, ns = _key(store, layout, (name, partition, endpoint, manifest.content_hash,
                                       manifest.model, params), namespace)
        shards = []
        for shard in manifest.shards:
            artifact = layout.shard(key, Path(shard.path).name)
            store.put_file(shard.path, artifact)
            shards.append(ShardRecord(artifact, shard.lines, shard.bytes, shard.sha256))
    pointer = RequestPointer(key, name, partition, endpoint, manifest.model, dict(params or {}),
                             manifest.content_hash, manifest.total_requests, shards, ns)
    store.write_bytes(layout.pointer, pointer.to_json())
    return pointer


def _key(store: Storage, layout: PartitionLayout, what: tuple, namespace: str | None
         ) -> tuple[str, str | None]:
    """The submission key of `what` in `namespace`, and the namespace it was made with.

    A partition whose stored pointer holds the same content under a key made before
    namespaces keeps that key, so that its batches are re-attached to, not paid twice.
    """
    key = submission_key(*what, namespace=namespace)
    if namespace and store.exists(layout.pointer):
        old = RequestPointer.from_json(store.read_bytes(layout.pointer))
        if old.namespace is None and old.key == submission_key(*what):
            return old.key, None
    return key, namespace


def _model_of(request: Mapping[str, Any] | BatchRequest | None) -> str | None:
    """The model of a request (a partition has one model per file)."""
    body = (request.get("body") if isinstance(request, Mapping)
            else getattr(request, "body", None))
    model = body.get("model") if isinstance(body, Mapping) else getattr(body, "model", None)
    return model if isinstance(model, str) else None


def read_pointer(store: Storage, name: str, partition: str | None) -> RequestPointer:
    """The request pointer ``write_requests`` stored for a partition."""
    return RequestPointer.from_json(store.read_bytes(PartitionLayout(name, partition).pointer))


def read_summary(store: Storage, name: str, partition: str | None) -> Summary:
    """The summary ``collect_partition`` published for a partition."""
    return Summary.from_json(store.read_bytes(PartitionLayout(name, partition).summary))


# -- partition keys too long for batch metadata -----------------------------------------------

def remember_partition(store: Storage, name: str, partition: str | None) -> None:
    """Record a partition key too long for batch metadata, so a tracker can recover it."""
    tag = partition_tag(partition)
    index = partition_index_key(name, tag)
    if partition and index is not None:
        store.write_bytes(index, partition.encode())


def partition_from_tag(store: Storage, name: str, tag: str,
                       known_keys: Callable[[], Iterable[str]] | None = None) -> str | None:
    """The partition key behind a batch's partition tag (None when it cannot be recovered).

    A short key is its own tag. A hashed one is looked up where ``remember_partition`` put it,
    else among `known_keys()` (e.g. a partitions definition's keys), hashing each.
    """
    index = partition_index_key(name, tag)
    if index is None:
        return tag
    if store.exists(index):
        return store.read_bytes(index).decode()
    for key in known_keys() if known_keys is not None else ():
        if partition_tag(key) == tag:
            return key
    return None


# -- submit -------------------------------------------------------------------------------------

@dataclass
class Submitted:
    """What ``submit_partition`` did at the provider."""

    manifest: SubmissionManifest
    superseded: list[dict]  # live batches of the partition's older submissions, now cancelled
    estimate_usd: Decimal | None  # the budget's estimate of what was created (None: no budget)
    uri: str  # where the manifest is stored (or, while shards are deferred, will be)
    deferred: int = 0  # shards waiting for room (quota, in-flight cap; ``defer``); 0: none


def submit_partition(client: BatchAPI, store: Storage, pointer: RequestPointer, policy: Policy,
                     *, defer: bool = False, log: Log = logger) -> Submitted:
    """Submit a partition's shards as attempt 1, re-attaching to what the provider has.

    The batches this submission key already has are found without reading the account's
    history (``_existing``); only the shards still to create are fetched from the store and
    priced. Above the budget it raises BudgetExceededError having submitted and cancelled
    nothing. Then the partition's batches of other (superseded) keys are cancelled, and it
    waits for room under the in-flight cap and the enqueued-token quota. With `defer` (a
    non-blocking run) it waits only while none of the submission's batches is live: shards
    with no room now are left for a later call (``Submitted.deferred``; the manifest is
    written once every shard has its batch), which the tracking sensor asks for as batches end.
    """
    layout = PartitionLayout(pointer.asset, pointer.partition)
    remember_partition(store, pointer.asset, pointer.partition)
    if not pointer.shards:  # an empty partition: no batch, but older ones are superseded
        return _submit_nothing(client, store, layout, pointer, policy, log)
    owner = Owner(policy.namespace, store)
    alayout = layout.attempt(pointer.key, 1)
    existing = _existing(client, store, alayout, pointer, policy, owner)
    with tempfile.TemporaryDirectory(prefix="bw-sub-") as tmp:
        paths = [s.artifact if i in existing
                 else str(store.get_file(s.artifact, Path(tmp) / f"shard-{i:05d}.jsonl"))
                 for i, s in enumerate(pointer.shards)]
        estimate = policy.check_budget([p for i, p in enumerate(paths) if i not in existing])
        superseded = cancel_partition(client, pointer.asset, pointer.partition,
                                      keep_key=pointer.key, owner=owner,
                                      completion_window=policy.completion_window)
        for b in superseded:
            log.info(f"cancelled superseded batch {b.get('id')}")
        if len(existing) < len(pointer.shards) and not store.exists(alayout.creating):
            store.write_bytes(alayout.creating, orjson.dumps({"at": time.time()}))
        manifest = _submit_attempt(client, pointer, policy, paths, 1,
                                   [s.lines for s in pointer.shards], existing=existing,
                                   owner=owner, defer=defer)
    for sb in manifest.batches:
        sb.input_path = pointer.shards[sb.shard].artifact
    deferred = len(pointer.shards) - len(manifest.batches)
    if deferred:
        log.info(f"{len(manifest.batches)} of {len(pointer.shards)} shard(s) have their batch; "
                 f"{deferred} wait for room (the enqueued-token quota or the in-flight cap): "
                 "the tracking sensor asks for this step again as batches end")
        return Submitted(manifest, superseded, estimate, store.uri(alayout.submission),
                         deferred)
    store.write_bytes(alayout.submission, manifest.to_json())
    uri = store.write_bytes(layout.submission, manifest.to_json())
    if manifest.reattached:
        log.info(f"re-attached to {len(manifest.batches)} existing batch(es); nothing submitted")
    return Submitted(manifest, superseded, estimate, uri)


def _existing(client: BatchAPI, store: Storage, alayout: AttemptLayout,
              pointer: RequestPointer, policy: Policy, owner: Owner) -> dict[int, dict]:
    """The batches attempt 1 of the submission already has at the provider, by shard.

    The stored manifest names them: each is read by id. Without one, a scan of the provider's
    list, back to when the first create was sent (``AttemptLayout.creating``: a crash before
    the manifest was written) or, with no such record either, to the oldest a live batch can
    be; never through the account's whole history. A provider that no longer knows a batch of
    the manifest gets the scan too.
    """
    if store.exists(alayout.submission):
        sub = SubmissionManifest.from_json(store.read_bytes(alayout.submission))
        if sub.key == pointer.key and sub.batches:
            try:
                batches = snapshot(client, sub.batch_ids)
            except NotFoundError:
                batches = None
            if batches is not None:
                return {sb.shard: batches[sb.batch_id] for sb in sub.batches
                        if is_reattachable(batches[sb.batch_id])}
    if store.exists(alayout.creating):
        since = float(orjson.loads(store.read_bytes(alayout.creating))["at"]) - CLOCK_SLACK
    else:
        since = live_since(policy.completion_window)
    return find_submission(client, pointer.key, 1, created_after=since, owner=owner)


def _submit_nothing(client: BatchAPI, store: Storage, layout: PartitionLayout,
                    pointer: RequestPointer, policy: Policy, log: Log) -> Submitted:
    superseded = cancel_partition(client, pointer.asset, pointer.partition, keep_key=pointer.key,
                                  owner=Owner(policy.namespace, store),
                                  completion_window=policy.completion_window)
    for b in superseded:
        log.info(f"cancelled superseded batch {b.get('id')}")
    manifest = SubmissionManifest(pointer.key, pointer.asset, pointer.partition, pointer.endpoint,
                                  pointer.model, 1, policy.completion_window, [])
    store.write_bytes(layout.attempt(pointer.key, 1).submission, manifest.to_json())
    uri = store.write_bytes(layout.submission, manifest.to_json())
    log.info("no requests in this partition: nothing submitted")
    return Submitted(manifest, superseded, None, uri)


def _submit_attempt(client: BatchAPI, pointer: RequestPointer, policy: Policy,
                    paths: Sequence[str], attempt: int, counts: Sequence[int],
                    **kw: Any) -> SubmissionManifest:
    return submit(
        client, paths, pointer.key, asset=pointer.asset, partition=pointer.partition,
        endpoint=pointer.endpoint, model=pointer.model, attempt=attempt,
        completion_window=policy.completion_window, metadata=policy.metadata,
        extra_body=policy.extra_body, request_counts=counts,
        max_in_flight=policy.profile.max_batches_in_flight, poll_interval=policy.poll_interval,
        capacity_timeout=policy.capacity_deadline, namespace=policy.namespace,
        token_limit=policy.token_limit(pointer.model), **kw)


def load_attempts(store: Storage, pointer: RequestPointer) -> list[SubmissionManifest]:
    """The stored manifests of a submission's attempts, in order."""
    layout = PartitionLayout(pointer.asset, pointer.partition)
    attempts = []
    while store.exists(key := layout.attempt(pointer.key, len(attempts) + 1).submission):
        attempts.append(SubmissionManifest.from_json(store.read_bytes(key)))
    return attempts


# -- collect ------------------------------------------------------------------------------------

@dataclass
class Collected:
    """A partition's published results."""

    summary: Summary
    results_uri: str
    unfinished_sample: list[dict[str, Any]]  # the first rows that did not succeed


def collect_partition(
    client: BatchAPI,
    store: Storage,
    pointer: RequestPointer,
    policy: Policy,
    *,
    blocking: bool,
    on_progress: Callable[[dict[str, dict]], None] | None = None,
    interrupts: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
    log: Log = logger,
) -> Collected | None:
    """Collect a partition: join every attempt, resubmit what did not succeed, publish.

    Returns None when batches are still running and `blocking` is off (collect again once
    they are terminal). With `blocking`, it waits; an exception in `interrupts` raised while
    waiting cancels the batches before it propagates. Attempts already collected (by an
    earlier call) are read back from the store, not joined again; resubmissions go up to
    ``policy.max_attempts``, each priced against the budget first.
    """
    attempts = load_attempts(store, pointer)
    if not attempts:
        raise ConfigurationError(f"{pointer.asset}: no submission for partition "
                                 f"{pointer.partition!r}; submit it first")
    layout = PartitionLayout(pointer.asset, pointer.partition)
    if not pointer.shards:  # an empty partition: its results are an empty table
        with tempfile.TemporaryDirectory(prefix="bw-collect-") as tmp:
            final = Path(tmp) / "results.parquet"
            pq.write_table(RESULTS_SCHEMA.empty_table(), final)
            summary = summarize(final, [], policy.prices)
            return _publish(store, layout, pointer, attempts, {}, summary, final)
    waiting = _Waiter(client, policy, blocking, on_progress, interrupts, log)
    parquets: list[str] = []
    figures = JoinFigures()
    failures: list[BatchFailure] = []
    last_batches: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bw-collect-") as tmp:
        work = Path(tmp)
        i = 0
        while True:
            sub, latest = attempts[i], i == len(attempts) - 1
            alayout = layout.attempt(pointer.key, sub.attempt)
            collected = store.exists(alayout.results)
            local = work / f"attempt-{sub.attempt}"
            requests = [store.get_file(b.input_path, local / "requests" / f"shard-{b.shard:05d}.jsonl")
                        for b in sub.batches]
            batches: dict[str, dict] = {}
            if latest or not collected:
                batches = waiting.until_settled(store, alayout, pointer, sub, requests)
                if batches is None:
                    return None
                last_batches = batches
            parquet, found, failed = _attempt_results(client, store, alayout, sub, batches,
                                                      requests, local, collected, policy, log)
            parquets.append(str(parquet))
            figures = figures.plus(found)
            failures += failed
            i += 1
            if not latest:  # its resubmission exists already: go on with it
                continue
            unfinished = _to_resubmit(parquet, sub, failed, policy, log)
            if not unfinished:
                break
            attempts.append(_resubmit(client, store, layout, pointer, policy, sub, requests,
                                      parquet, work, unfinished, log))
        final = work / "results.parquet"
        merge_attempts(parquets, final)
        summary = summarize(final, parquets, policy.prices, figures=figures)
        summary.batch_failures = [f.to_dict() for f in failures]
        return _publish(store, layout, pointer, attempts, last_batches, summary, final)


class _Waiter:
    """Gets an attempt's batches once terminal: now, by waiting (blocking), or not at all."""

    def __init__(self, client: BatchAPI, policy: Policy, blocking: bool,
                 on_progress: Callable[[dict[str, dict]], None] | None,
                 interrupts: tuple[type[BaseException], ...], log: Log) -> None:
        self.client, self.policy, self.blocking = client, policy, blocking
        self.on_progress, self.interrupts, self.log = on_progress, interrupts, log

    def until_settled(self, store: Storage, alayout: AttemptLayout, pointer: RequestPointer,
                      sub: SubmissionManifest, paths: Sequence[Path]) -> dict[str, dict] | None:
        """The attempt's batches once terminal, shards refused for capacity created again
        (``capacity``) until none is left or the deadline passes; None: not yet."""
        while True:
            batches = self.until_terminal(sub, store, alayout)
            if batches is None:
                return None
            refusals = capacity.refused(sub, batches)
            if not refusals or capacity.deadline_passed(sub, self.policy):
                return batches
            capacity.create_again(self.client, pointer, self.policy, sub, refusals, paths,
                                  blocking=self.blocking, log=self.log)
            store.write_bytes(alayout.submission, sub.to_json())
            if sub.attempt == 1:
                store.write_bytes(PartitionLayout(pointer.asset, pointer.partition).submission,
                                  sub.to_json())
            if not self.blocking:
                return None  # the tracking sensor asks for the results run again

    def until_terminal(self, sub: SubmissionManifest, store: Storage | None = None,
                       alayout: AttemptLayout | None = None) -> dict[str, dict] | None:
        batches = snapshot(self.client, sub.batch_ids)
        if all(is_terminal(b) for b in batches.values()):
            return batches
        if not self.blocking:
            stored = 0
            if store is not None and alayout is not None:  # those that ended: stored now
                stored = store_terminal(self.client, store, alayout, sub, batches)
            self.log.info(f"attempt {sub.attempt}: batches still running "
                          f"({progress(batches.values()).describe()}); {stored} file(s) of "
                          "ended batches stored; collect again once all are terminal")
            return None
        report = self.on_progress or self._reporter(sub)
        if store is not None and alayout is not None:
            report = fetching(self.client, store, alayout, sub, report)
        try:
            return wait(self.client, sub.batch_ids, poll_interval=self.policy.poll_interval,
                        timeout=self.policy.wait_timeout, on_progress=report)
        except self.interrupts:
            self.log.warning(f"interrupted: cancelling {len(sub.batch_ids)} batch(es)")
            cancel(self.client, sub.batch_ids)
            raise

    def _reporter(self, sub: SubmissionManifest) -> Callable[[dict[str, dict]], None]:
        """Logs the attempt's progress each time it changes."""
        last: list[str] = []

        def report(batches: dict[str, dict]) -> None:
            line = progress(batches.values()).describe()
            if line not in last:
                last[:] = [line]
                self.log.info(f"attempt {sub.attempt}: {line}")
        return report


def _attempt_results(client: BatchAPI, store: Storage, alayout: AttemptLayout,
                     sub: SubmissionManifest, batches: Mapping[str, dict],
                     requests: Sequence[Path], local: Path, collected: bool, policy: Policy,
                     log: Log) -> tuple[Path, JoinFigures, list[BatchFailure]]:
    """An attempt's results Parquet (local), join figures and batch-level failures: read
    back, or joined now (then the batches' input files are deleted at the provider)."""
    parquet = local / "results.parquet"
    if collected:
        store.get_file(alayout.results, parquet)
        found = (JoinFigures.from_json(store.read_bytes(alayout.join))
                 if store.exists(alayout.join) else JoinFigures())
        return parquet, found, _read_failures(store, alayout)
    failed = _batch_failures(sub, batches, policy, log)
    prefetched(store, alayout, sub, local / "raw")
    result = collect(client, sub, batches, requests, local, {f.batch_id: f for f in failed})
    for raw in result.output_files + result.error_files:
        if not store.exists(alayout.raw(Path(raw).name)):  # stored as its batch ended: kept
            store.put_file(raw, alayout.raw(Path(raw).name))
    store.write_bytes(alayout.join, result.figures.to_json())
    store.write_bytes(alayout.failures, orjson.dumps([f.to_dict() for f in failed]))
    store.put_file(result.path, alayout.results)
    if policy.delete_input_files:  # the results are stored: the provider's copy is not needed
        for file_id in {b.input_file_id for b in sub.batches if b.input_file_id}:
            forget_file(client, file_id)
    log.info(f"attempt {sub.attempt}: {result.counts}")
    if result.unexpected or result.duplicates:
        log.warning(f"attempt {sub.attempt}: {result.unexpected} result line(s) with a custom_id "
                    f"that was never submitted, {result.duplicates} duplicate line(s)")
    return parquet, result.figures, failed


def _batch_failures(sub: SubmissionManifest, batches: Mapping[str, dict], policy: Policy,
                    log: Log) -> list[BatchFailure]:
    """The attempt's batch-level failures, each logged with its decision."""
    failed = []
    for sb in sub.batches:
        failure = batch_failure(batches[sb.batch_id], shard=sb.shard)
        if failure is None:
            continue
        if failure.decision == CAPACITY:  # still refused: the deadline passed
            failure.message += f" ({capacity.deadline_note(policy)})"
        log.warning(f"attempt {sub.attempt}: {failure.describe()} -> {failure.decision}")
        failed.append(failure)
    return failed


def _read_failures(store: Storage, alayout: AttemptLayout) -> list[BatchFailure]:
    if not store.exists(alayout.failures):
        return []
    return [BatchFailure(**f) for f in orjson.loads(store.read_bytes(alayout.failures))]


def _to_resubmit(parquet: Path, sub: SubmissionManifest, failed: Sequence[BatchFailure],
                 policy: Policy, log: Log) -> int:
    """How many requests the next attempt takes (0: this attempt is the last).

    A batch that failed for its input, stopped (the account) or is still refused for capacity
    past the deadline stops the partition: resubmitting would fail the same way. A cancelled
    or expired batch's unrun requests are resubmitted like any unfinished request.
    """
    done = ResultSet.from_parquet(parquet)
    unfinished = done.total - done.counts.get(SUCCEEDED, 0)
    if unfinished:  # less what fails again the same way (the failure table's request rule)
        unfinished = sum(1 for _ in iter_unfinished_ids(parquet))
    if not unfinished or sub.attempt >= policy.max_attempts:
        return 0
    cancelled = [f.batch_id for f in failed if f.status == "cancelled"]
    if cancelled:
        log.warning(f"attempt {sub.attempt}: batches were cancelled ({cancelled[:5]}); the "
                    "requests they did not run go into the next attempt with the others")
    stopping = [f for f in failed if f.decision in (INPUT, STOP, CAPACITY)]
    if stopping:
        log.warning(f"attempt {sub.attempt}: {len(stopping)} batch(es) failed as a whole "
                    f"({stopping[0].describe()}); the partition stops, nothing is resubmitted")
        return 0
    return unfinished


def _resubmit(client: BatchAPI, store: Storage, layout: PartitionLayout, pointer: RequestPointer,
              policy: Policy, sub: SubmissionManifest, requests: Sequence[Path], results: Path,
              work: Path, unfinished: int, log: Log) -> SubmissionManifest:
    """Submit exactly the unfinished requests of attempt `sub` as the next attempt.

    The budget is checked before anything is stored or submitted (BudgetExceededError then).
    """
    n = sub.attempt + 1
    log.info(f"attempt {sub.attempt}: resubmitting {unfinished} unfinished request(s)")
    shards = write_retry_shards(requests, results, work / f"attempt-{n}" / "requests",
                                policy.profile, endpoint=pointer.endpoint,
                                max_tokens_per_file=shard_token_cap(
                                    policy.token_limit(pointer.model))).shards
    paths = [s.path for s in shards]
    try:
        policy.check_budget(paths)
    except BudgetExceededError as exc:
        raise BudgetExceededError(
            f"resubmission of {unfinished} unfinished request(s) as attempt {n}: {exc}"
        ) from None
    alayout = layout.attempt(pointer.key, n)
    keys = [alayout.shard(Path(p).name) for p in paths]
    for path, key in zip(paths, keys, strict=True):
        store.put_file(path, key)
    retry = _submit_attempt(client, pointer, policy, paths, n, [s.lines for s in shards],
                            created_after=sub.created_at - CLOCK_SLACK,  # it comes after `sub`
                            owner=Owner(policy.namespace, store))
    for sb, key in zip(retry.batches, keys, strict=True):
        sb.input_path = key
    store.write_bytes(alayout.submission, retry.to_json())
    return retry


def _publish(store: Storage, layout: PartitionLayout, pointer: RequestPointer,
             attempts: list[SubmissionManifest], last_batches: Mapping[str, dict],
             summary: Summary, final: Path) -> Collected:
    """Store the final Parquet and the summary."""
    uri = store.put_file(final, layout.results)
    finished = finished_at(last_batches.values())
    summary.submission_key = pointer.key
    summary.submitted = pointer.total_requests
    summary.batch_ids = [bid for a in attempts for bid in a.batch_ids]
    summary.time_to_complete_seconds = (round(finished - attempts[0].created_at, 3)
                                        if finished else None)
    store.write_bytes(layout.summary, summary.to_json())
    sample = unfinished_sample(final, SAMPLE_ROWS) if summary.unfinished else []
    return Collected(summary, uri, sample)
