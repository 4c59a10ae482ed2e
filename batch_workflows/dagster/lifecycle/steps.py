"""The bodies of the three lifecycle assets: each one call into ``batch_workflows.lifecycle``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dagster import AssetExecutionContext, DagsterExecutionInterruptedError, MaterializeResult

from batch_workflows import lifecycle as lc
from batch_workflows.dagster.concurrency import ensure_pool
from batch_workflows.dagster.lifecycle.metadata import (
    batch_metadata,
    combined_metadata,
    requests_metadata,
    results_metadata,
)
from batch_workflows.dagster.lifecycle.spec import LifecycleSpec


def materialize_requests(spec: LifecycleSpec, context: AssetExecutionContext,
                         inputs: dict[str, Any]) -> MaterializeResult:
    """``<name>_requests``: build, validate and store the shards and pointer of each of the
    run's partitions (one, or a range's with a single-run backfill policy)."""
    batch, store = spec.resources(context)
    keys = spec.partition_keys(context)
    per_key = []
    for pkey in keys:
        builder_context = context if len(keys) == 1 else PartitionContext(context, pkey)
        pointer = lc.write_requests(store, spec.name, pkey, spec.endpoint,
                                    spec.build_requests(builder_context, **inputs),
                                    batch.get_profile(), spec.params,
                                    allow_empty=spec.allow_empty,
                                    namespace=batch.namespace_for(store))
        uri = store.uri(lc.PartitionLayout(spec.name, pkey).pointer)
        per_key.append((pkey, requests_metadata(pointer, uri)))
    return MaterializeResult(metadata=combined_metadata(per_key))


def materialize_batch(spec: LifecycleSpec, context: AssetExecutionContext) -> MaterializeResult:
    """``<name>_batch``: submit each partition (re-attaching to what the provider has)."""
    batch, store = spec.resources(context)
    ensure_pool(context.instance, spec.pool)
    per_key = []
    with batch.get_client(store, spec.namespace) as client:
        for pkey in spec.partition_keys(context):
            pointer = lc.read_pointer(store, spec.name, pkey)
            submitted = lc.submit_partition(client, store, pointer,
                                            policy_for(spec, context, batch, store),
                                            defer=not batch.is_blocking, log=context.log)
            per_key.append((pkey, batch_metadata(submitted, batch.provider)))
    return MaterializeResult(metadata=combined_metadata(per_key))


def materialize_results(spec: LifecycleSpec, context: AssetExecutionContext):
    """``<name>_results``: collect, resubmit and publish; nothing while batches still run (in a
    range run: nothing unless every partition is collected; the sensor asks for the others)."""
    batch, store = spec.resources(context)
    ensure_pool(context.instance, spec.pool)
    per_key, waiting = [], []
    with batch.get_client(store, spec.namespace) as client:
        for pkey in spec.partition_keys(context):
            pointer = lc.read_pointer(store, spec.name, pkey)
            collected = lc.collect_partition(
                client, store, pointer, policy_for(spec, context, batch, store),
                blocking=batch.is_blocking,
                interrupts=(DagsterExecutionInterruptedError, KeyboardInterrupt), log=context.log)
            if collected is None:
                waiting.append(pkey)
            else:
                per_key.append((pkey, results_metadata(collected)))
    if waiting:
        context.log.info(f"batches still running for {waiting}: the batch sensor requests the "
                         "results run of each partition once its batches are terminal")
        return
    yield MaterializeResult(metadata=combined_metadata(per_key))


class PartitionContext:
    """The run's context as one of its partitions sees it: in a range run (single-run backfill)
    each partition's request builder reads ``context.partition_key`` as its own key."""

    def __init__(self, context: Any, partition_key: str | None):
        self._context = context
        self.partition_key = partition_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def policy_for(spec: LifecycleSpec, context: AssetExecutionContext, batch: Any,
            store: Any) -> lc.Policy:
    policy = batch.policy(metadata=spec.batch_metadata, extra_body=spec.extra_body,
                          warn=context.log.warning, store=store)
    return replace(policy, namespace=spec.namespace) if spec.namespace else policy
