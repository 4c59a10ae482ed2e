"""`inbox_sensor`: a sensor that runs a flow for each new or changed file of its inbox.

Each tick lists the flow's files, compares them with the sensor's cursor
(`batch_workflows.flows.inbox`) and requests one run per new or changed file, with the file's
partition key, unless that partition is already materialized from this very content: every asset
of the selection has a materialization of it from a run that started after the file last changed
(the demo, the CLI or the UI materialized it; a new cursor alone — a new daemon, a reset sensor —
does not run it again). With a `DynamicPartitionsDefinition`, the tick first adds the partitions the
instance lacks: every file's key plus `extra_partitions()` (keys that exist without a file, such
as a shipped corpus's). With any other partitions definition (daily, static) the keys are the
definition's own, so nothing is added.

A flow adds its inbox with one call::

    inbox_sensor("distillation_inbox_sensor", distillation_partitions, list_prompt_files,
                 [*lifecycle.assets, distillation_dataset])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from batch_workflows.flows.inbox import run_key, scan_inbox, unknown_keys
from batch_workflows.flows.sources import SourceFile


def _file_name(file: SourceFile) -> str:
    return file.name


def _no_keys() -> list[str]:
    return []


def inbox_sensor(
    name: str,
    partitions_def: PartitionsDefinition,
    list_files: Callable[[], Sequence[SourceFile]],
    selection: Sequence[AssetsDefinition],
    *,
    partition_key: Callable[[SourceFile], str | None] = _file_name,
    extra_partitions: Callable[[], Sequence[str]] = _no_keys,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    description: str | None = None,
) -> SensorDefinition:
    """A sensor named `name` that materializes `selection` for each new or changed file.

    `list_files` lists the inbox (e.g. `sources.list_source_files` over the flow's watched
    folder); `partition_key` maps a file to its partition (default: its name; None: not one
    of the flow's files, skipped)."""
    asset_keys = [key for assets_def in selection for key in assets_def.keys]
    dynamic = partitions_def if isinstance(partitions_def, DynamicPartitionsDefinition) else None

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=selection,
        default_status=default_status,
        description=description,
    )
    def _inbox(context: SensorEvaluationContext) -> SensorResult:
        scan = scan_inbox(list_files(), context.cursor)
        keyed = [(f, partition_key(f)) for f in scan.files]
        changed = {f.name for f in scan.changed}
        todo = [(f, key) for f, key in keyed if key is not None and f.name in changed]
        done = [f.name for f, key in todo
                if materialized_since(context.instance, asset_keys, key, f.modified)]
        runs = [RunRequest(partition_key=key, run_key=run_key(f))
                for f, key in todo if f.name not in done]
        adds = []
        if dynamic is not None:
            keys = [*extra_partitions(), *(key for _, key in keyed if key is not None)]
            new = unknown_keys(keys, context.instance.get_dynamic_partitions(dynamic.name))
            if new:
                adds.append(dynamic.build_add_request(new))
        skip = None if runs else (
            f"already materialized from their current content: {', '.join(done)}" if done
            else "no new or changed files")
        return SensorResult(run_requests=runs, dynamic_partitions_requests=adds,
                            cursor=scan.cursor, skip_reason=skip)

    return _inbox


def materialized_since(instance: DagsterInstance, asset_keys: Sequence[AssetKey],
                       partition: str, changed_at: float) -> bool:
    """Whether each of `asset_keys` has its latest materialization of `partition` from a run
    that started after `changed_at` (epoch seconds): that run read the file as it is now."""
    for asset_key in asset_keys:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1).records
        if not records:
            return False
        run = instance.get_run_record_by_id(records[0].run_id)
        started = (run.start_time or run.create_timestamp.timestamp()) if run else 0.0
        if started <= changed_at:
            return False
    return True
