"""The bodies of the three lifecycle assets: each one call into ``batch_workflows.lifecycle``."""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext, DagsterExecutionInterruptedError, MaterializeResult

from assets.lifecycle.metadata import batch_metadata, requests_metadata, results_metadata
from assets.lifecycle.spec import LifecycleSpec
from batch_workflows import lifecycle as lc


def materialize_requests(spec: LifecycleSpec, context: AssetExecutionContext,
                         inputs: dict[str, Any]) -> MaterializeResult:
    """``<name>_requests``: build, validate and store the partition's shards and pointer."""
    batch, store = spec.resources(context)
    pkey = spec.partition(context)
    pointer = lc.write_requests(store, spec.name, pkey, spec.endpoint,
                                spec.build_requests(context, **inputs), batch.get_profile(),
                                spec.params)
    uri = store.uri(lc.PartitionLayout(spec.name, pkey).pointer)
    return MaterializeResult(metadata=requests_metadata(pointer, uri))


def materialize_batch(spec: LifecycleSpec, context: AssetExecutionContext) -> MaterializeResult:
    """``<name>_batch``: submit the partition (re-attaching to what the provider has)."""
    batch, store = spec.resources(context)
    spec.check_pool(context, batch)
    pointer = lc.read_pointer(store, spec.name, spec.partition(context))
    with batch.get_client() as client:
        submitted = lc.submit_partition(client, store, pointer, _policy(spec, context, batch),
                                        log=context.log)
    return MaterializeResult(metadata=batch_metadata(submitted, batch.provider))


def materialize_results(spec: LifecycleSpec, context: AssetExecutionContext):
    """``<name>_results``: collect, resubmit and publish; nothing while batches still run."""
    batch, store = spec.resources(context)
    spec.check_pool(context, batch)
    pointer = lc.read_pointer(store, spec.name, spec.partition(context))
    with batch.get_client() as client:
        collected = lc.collect_partition(
            client, store, pointer, _policy(spec, context, batch), blocking=batch.is_blocking,
            interrupts=(DagsterExecutionInterruptedError, KeyboardInterrupt), log=context.log)
    if collected is None:
        context.log.info("the batch sensor requests this run again once the batches are terminal")
        return
    yield MaterializeResult(metadata=results_metadata(collected))


def _policy(spec: LifecycleSpec, context: AssetExecutionContext, batch: Any) -> lc.Policy:
    return batch.policy(metadata=spec.batch_metadata, extra_body=spec.extra_body,
                        warn=context.log.warning)
