"""The whole lifecycle in one blocking call, for scripts, notebooks and other orchestrators."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batch_workflows.lifecycle.layout import PartitionLayout
from batch_workflows.lifecycle.manifests import SubmissionManifest, Summary
from batch_workflows.lifecycle.partition import (
    collect_partition,
    load_attempts,
    submit_partition,
    write_requests,
)
from batch_workflows.lifecycle.policy import Policy
from batch_workflows.lifecycle.provider import BatchAPI
from batch_workflows.lifecycle.storage import LocalFolder
from batch_workflows.wire import BatchRequest


@dataclass
class Outcome:
    """What `run_to_completion` produced; every file is in ``store`` (the work folder)."""

    results_path: str
    summary: Summary
    attempts: list[SubmissionManifest]
    store: LocalFolder


def run_to_completion(
    client: BatchAPI,
    requests: Iterable[Mapping[str, Any] | BatchRequest],
    work_dir: str | os.PathLike[str],
    *,
    name: str,
    endpoint: str,
    policy: Policy,
    partition: str | None = None,
    params: Mapping[str, Any] | None = None,
    on_progress: Callable[[dict[str, dict]], None] | None = None,
) -> Outcome:
    """Validate, shard, submit, wait, collect and resubmit, up to ``policy.max_attempts``.

    The same three steps as the Dagster assets (``write_requests``, ``submit_partition``,
    ``collect_partition``) over a local folder. Every step re-attaches to what the provider
    already has (same submission key, attempt, shard), so calling it again after a crash, or
    with the same requests in another folder, continues without paying twice.
    """
    store = LocalFolder(work_dir)
    pointer = write_requests(store, name, partition, endpoint, requests, policy.profile, params)
    submit_partition(client, store, pointer, policy)
    collected = collect_partition(client, store, pointer, policy, blocking=True,
                                  on_progress=on_progress)
    if collected is None:  # blocking: it waits for every batch, so this cannot happen
        raise RuntimeError("collect_partition returned nothing in blocking mode")
    return Outcome(store.uri(PartitionLayout(name, partition).results), collected.summary,
                   load_attempts(store, pointer), store)
