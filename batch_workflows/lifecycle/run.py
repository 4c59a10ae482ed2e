"""The whole lifecycle in one blocking call, for scripts, notebooks and other orchestrators."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batch_workflows.lifecycle.layout import PartitionLayout
from batch_workflows.lifecycle.manifests import (
    RequestPointer,
    ShardRecord,
    SubmissionManifest,
    Summary,
)
from batch_workflows.lifecycle.partition import (
    collect_partition,
    load_attempts,
    submit_partition,
)
from batch_workflows.lifecycle.policy import Policy
from batch_workflows.lifecycle.provider import BatchAPI
from batch_workflows.lifecycle.storage import LocalFolder


@dataclass
class Outcome:
    """What `run_to_completion` produced; its files are under ``store`` (the work folder)."""

    results_path: str
    summary: Summary
    attempts: list[SubmissionManifest]
    store: LocalFolder


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

    The same steps as the Dagster assets (``submit_partition``, ``collect_partition``) over a
    local folder: every step re-attaches to what the provider already has (same key, attempt,
    shard), so calling it again after a crash continues where it stopped without paying
    twice. `shard_paths` are valid request files (``write_shards`` makes them); `key` is
    their ``submission_key``.
    """
    store = LocalFolder(work_dir)
    policy = Policy(profile.with_limits(completion_window=completion_window),
                    max_attempts=max_attempts, poll_interval=poll_interval, wait_timeout=timeout,
                    prices=price_table)
    pointer = _store_shards(store, shard_paths, key, asset, partition, endpoint, model)
    submit_partition(client, store, pointer, policy)
    collected = collect_partition(client, store, pointer, policy, blocking=True,
                                  on_progress=on_progress)
    if collected is None:  # blocking: it waits for every batch, so this cannot happen
        raise RuntimeError("collect_partition returned nothing in blocking mode")
    layout = PartitionLayout(asset, partition)
    return Outcome(str(store.path(layout.results)), collected.summary,
                   load_attempts(store, pointer), store)


def _store_shards(store: LocalFolder, shard_paths: Sequence[str | os.PathLike[str]], key: str,
                  asset: str, partition: str | None, endpoint: str,
                  model: str | None) -> RequestPointer:
    """The request pointer of ready-made shards, copied into the store."""
    layout = PartitionLayout(asset, partition)
    shards = []
    for i, path in enumerate(shard_paths):
        artifact = layout.shard(key, f"shard-{i:05d}.jsonl")
        store.put_file(path, artifact)
        shards.append(_shard_record(path, artifact))
    pointer = RequestPointer(key, asset, partition, endpoint, model, {}, "",
                             sum(s.lines for s in shards), shards)
    store.write_bytes(layout.pointer, pointer.to_json())
    return pointer


def _shard_record(path: str | os.PathLike[str], artifact: str) -> ShardRecord:
    """Lines, bytes and sha256 of a shard, read as a stream."""
    digest, lines, size = hashlib.sha256(), 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            digest.update(line)
            size += len(line)
            lines += bool(line.strip())
    return ShardRecord(artifact, lines, size, digest.hexdigest())
