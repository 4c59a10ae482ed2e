"""Submit → track → collect: the batch lifecycle as plain functions, with no Dagster.

::

    requests ──validate──▶ shards ──upload──▶ files ──create──▶ batches ──track──▶ terminal
                                                                                    │
          results ◀──join on custom_id── output + error files ◀──download───────────┘
             │
             └── failed / expired / missing ──resubmit (bounded attempts)──▶ batches

A partition goes through four steps over a ``Storage`` (a ``LocalFolder``, or the Dagster
``ArtifactStore``), each of which can run in another process, after a crash, or again::

    pointer = write_requests(store, "docs", "2024-01-01", EMBEDDINGS, requests, profile)
    submit_partition(client, store, pointer, policy)            # returns once batches exist
    tick = track_batches(client, "docs", cursor)                # a sensor's pass: what is ready
    collect_partition(client, store, pointer, policy, blocking=True)   # join, resubmit, publish
    read_summary(store, "docs", "2024-01-01")

``run_to_completion`` does it in one blocking call over a local folder. State lives in two
places only: the provider (every batch carries the submission key, asset, partition, attempt
and shard index in its ``metadata``) and the store (``layout.PartitionLayout``). Because the
provider's list is consulted before anything is created, a crash between any two calls never
leads to a second paid batch for the same content.

Modules: ``keys`` (submission keys, batch metadata), ``manifests`` (the typed records),
``layout`` (artifact keys), ``storage`` (the protocol and a local folder), ``policy`` (limits,
attempts, budget), ``provider`` (the Batch API and its list), ``namespace`` (which batches are
this deployment's), ``failures`` (batch-level failures and the one code → decision table),
``quota`` (admission under an enqueued-token quota), ``capacity`` (shards refused for
capacity, created again), ``submit``, ``track``, ``collect`` (one attempt), ``partition``
(the loop), ``run`` (the loop in one call).
"""

from batch_workflows.lifecycle.collect import (
    RETRY_PARTITION_BYTES,
    AttemptResult,
    collect,
    download_outputs,
    iter_unfinished_ids,
    iter_unfinished_requests,
    merge_attempts,
    summarize,
    unfinished_sample,
    write_retry_shards,
)
from batch_workflows.lifecycle.failures import (
    DECISIONS,
    BatchFailure,
    batch_errors,
    batch_failure,
    decide,
)
from batch_workflows.lifecycle.keys import (
    MAX_USER_METADATA_PAIRS,
    META_ASSET,
    META_ATTEMPT,
    META_KEY,
    META_MODEL,
    META_NAMESPACE,
    META_PARTITION,
    META_SHARD,
    META_SHARDS,
    META_TOKENS,
    RESERVED_METADATA,
    batch_metadata,
    check_namespace,
    namespace_for,
    partition_tag,
    shard_idempotency_key,
    submission_key,
)
from batch_workflows.lifecycle.layout import PartitionLayout, partition_dir
from batch_workflows.lifecycle.manifests import (
    JoinFigures,
    RequestPointer,
    ShardRecord,
    SubmissionManifest,
    SubmittedBatch,
    Summary,
)
from batch_workflows.lifecycle.namespace import (
    Owner,
    base_uri,
    default_namespace,
    resolve_namespace,
    store_base_uri,
)
from batch_workflows.lifecycle.partition import (
    Collected,
    Submitted,
    collect_partition,
    load_attempts,
    partition_from_tag,
    read_pointer,
    read_summary,
    remember_partition,
    submit_partition,
    write_requests,
)
from batch_workflows.lifecycle.policy import Budget, Policy
from batch_workflows.lifecycle.provider import (
    CLOCK_SLACK,
    BatchAPI,
    count_in_flight,
    find_submission,
    forget_file,
    iter_lifecycle_batches,
    live_since,
    wait_for_capacity,
)
from batch_workflows.lifecycle.quota import enqueued_tokens, shard_token_cap, wait_for_tokens
from batch_workflows.lifecycle.run import Outcome, run_to_completion
from batch_workflows.lifecycle.storage import LocalFolder, Storage
from batch_workflows.lifecycle.submit import submit
from batch_workflows.lifecycle.track import (
    FETCH_INTERVAL,
    Observation,
    Progress,
    Tick,
    cancel,
    cancel_partition,
    finished_at,
    progress,
    snapshot,
    track_batches,
    wait,
)

__all__ = [
    "CLOCK_SLACK", "DECISIONS", "FETCH_INTERVAL", "MAX_USER_METADATA_PAIRS", "META_ASSET", "META_ATTEMPT",
    "META_KEY", "META_MODEL", "META_NAMESPACE", "META_PARTITION", "META_SHARD", "META_SHARDS",
    "META_TOKENS", "RESERVED_METADATA", "RETRY_PARTITION_BYTES",
    "AttemptResult", "BatchAPI", "BatchFailure", "Budget", "Collected", "JoinFigures", "LocalFolder",
    "Observation", "Outcome", "Owner", "PartitionLayout", "Policy", "Progress", "RequestPointer",
    "ShardRecord", "Storage", "SubmissionManifest", "Submitted", "SubmittedBatch", "Summary",
    "Tick", "base_uri", "batch_errors", "batch_failure", "batch_metadata", "cancel",
    "check_namespace", "decide", "default_namespace", "enqueued_tokens", "forget_file",
    "namespace_for", "resolve_namespace", "shard_token_cap", "store_base_uri",
    "wait_for_tokens", "cancel_partition", "collect", "collect_partition",
    "count_in_flight", "download_outputs", "find_submission", "finished_at",
    "iter_lifecycle_batches", "iter_unfinished_ids", "live_since", "iter_unfinished_requests",
    "load_attempts", "merge_attempts", "partition_dir", "partition_from_tag", "partition_tag",
    "progress", "read_pointer", "read_summary", "remember_partition", "run_to_completion",
    "shard_idempotency_key", "snapshot", "submission_key", "submit", "submit_partition",
    "summarize", "track_batches", "unfinished_sample", "wait", "wait_for_capacity",
    "write_requests", "write_retry_shards",
]
