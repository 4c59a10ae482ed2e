"""``<name>_batch_sensor``: tracks in-flight batches and requests the results run when done.

While a partition's batches end one by one, it also requests the results run of the partition
(tagged ``batch_workflows/fetch``): that run finds batches still running, stores the files of
those that ended and materializes nothing, so no output waits for the slowest batch or the
provider's retention (``lc.track_batches`` says when, at most every ``lc.FETCH_INTERVAL``).
When shards wait for room under the provider's quota (a non-blocking batch run creates what
fits and leaves the rest), it requests the partition's batch run again each time more of its
batches have ended.
"""

from typing import Any

from dagster import (
    AssetObservation,
    AssetsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from batch_workflows import lifecycle as lc
from batch_workflows.dagster.concurrency import ensure_pool
from batch_workflows.dagster.lifecycle.metadata import observation_metadata
from batch_workflows.dagster.lifecycle.spec import LifecycleSpec
from batch_workflows.wire import parse_duration

SUBMISSION_TAG = "batch_workflows/submission"
FETCH_TAG = "batch_workflows/fetch"  # on a run that stores ended batches' files while others run


def evaluate(spec: LifecycleSpec, batch_asset: AssetsDefinition, results: AssetsDefinition,
             context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """One tick: one paginated list scan (``lc.track_batches``), turned into Dagster events."""
    batch, store = spec.resources(context)
    ensure_pool(context.instance, spec.pool)
    if batch.is_blocking:
        return SkipReason("blocking mode: runs wait for their own batches")
    with batch.get_client(store, spec.namespace) as client:
        tick = lc.track_batches(client, spec.name, context.cursor,
                                horizon_seconds=parse_duration(batch.completion_window),
                                owner=lc.Owner(spec.namespace or batch.namespace_for(store),
                                               store))
    partitions = _PartitionKeys(spec, store, context)
    events = [
        AssetObservation(asset_key=batch_asset.key, partition=partitions.key(o.partition),
                         metadata=observation_metadata(o))
        for o in tick.observations if partitions.known(o.partition)
    ]
    runs = [
        RunRequest(run_key=f"{spec.results_name}:{partitions.key(tag)}:{marker}",
                   partition_key=partitions.key(tag),
                   asset_selection=[results.key, *spec.collect_with],  # checks come along
                   tags={**spec.tags, SUBMISSION_TAG: marker})
        for tag, marker in tick.ready if partitions.known(tag)
    ] + [
        RunRequest(run_key=f"{spec.results_name}:{partitions.key(tag)}:{marker}:{ended}",
                   partition_key=partitions.key(tag), asset_selection=[results.key],
                   tags={**spec.tags, SUBMISSION_TAG: marker, FETCH_TAG: ended})
        for tag, marker, ended in tick.fetch if partitions.known(tag)
    ] + [
        RunRequest(run_key=f"{spec.batch_name}:{partitions.key(tag)}:{marker}:{ended}",
                   partition_key=partitions.key(tag), asset_selection=[batch_asset.key],
                   tags={**spec.tags, SUBMISSION_TAG: marker})
        for tag, marker, ended in tick.admit if partitions.known(tag)
    ]
    if not runs and not events:
        return SensorResult(skip_reason=SkipReason(tick.describe()), cursor=tick.cursor)
    return SensorResult(run_requests=runs, asset_events=events, cursor=tick.cursor)


class _PartitionKeys:
    """The real partition key behind a metadata tag (hashed when the key is long), cached; None
    for a key this instance does not have (batches of another deployment on the same account, or
    of a deleted partition), which would otherwise fail the whole tick."""

    def __init__(self, spec: LifecycleSpec, store: Any, context: SensorEvaluationContext):
        self.spec, self.store, self.context = spec, store, context
        self.keys: dict[str, str | None] = {}
        self._instance_keys: set[str] | None = None

    def instance_keys(self) -> set[str]:
        """The definition's keys in this instance (dynamic ones from its storage), read once."""
        if self._instance_keys is None:
            self._instance_keys = set(self.spec.partitions_def.get_partition_keys(
                dynamic_partitions_store=self.context.instance))
        return self._instance_keys

    def key(self, tag: str | None) -> str | None:
        partitions_def = self.spec.partitions_def
        if partitions_def is None or tag is None:
            return None
        if tag not in self.keys:
            self.keys[tag] = lc.partition_from_tag(self.store, self.spec.name, tag,
                                                   self.instance_keys)
            if self.keys[tag] is None:
                self.context.log.warning(
                    f"{self.spec.name}: no partition key found for tag {tag[:80]!r}")
            elif self.keys[tag] not in self.instance_keys():
                self.context.log.warning(f"{self.spec.name}: batches of partition "
                                         f"{self.keys[tag]!r}, unknown to this instance, skipped")
                self.keys[tag] = None
        return self.keys[tag]

    def known(self, tag: str | None) -> bool:
        return self.spec.partitions_def is None or self.key(tag) is not None


def batch_sensor(spec: LifecycleSpec, batch_asset: AssetsDefinition,
                 results: AssetsDefinition) -> SensorDefinition:
    @sensor(
        name=f"{spec.definition_name}_batch_sensor",
        minimum_interval_seconds=spec.sensor_interval_seconds,
        asset_selection=[batch_asset.key, results.key, *spec.collect_with],
        required_resource_keys={spec.batch_resource_key, spec.artifacts_resource_key},
        default_status=spec.sensor_default_status,
        description=f"Tracks the in-flight batches of {spec.name}; requests "
                    f"{spec.results_name} when they are done ({spec.batch_name} again when "
                    "shards wait for room under the provider's quota).",
    )
    def tracking_sensor(context: SensorEvaluationContext, **_direct: Any):
        # direct invocation (build_sensor_context) also passes the resources as keywords
        return evaluate(spec, batch_asset, results, context)

    return tracking_sensor
