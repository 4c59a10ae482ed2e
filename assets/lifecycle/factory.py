"""``batch_lifecycle``: the requests → batch → results assets, the tracking sensor and checks.

It only wires: each asset's body is one function of ``assets.lifecycle.steps`` calling into
``batch_workflows.lifecycle``, which holds the lifecycle itself.
"""

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DefaultSensorStatus,
    MaterializeResult,
    PartitionsDefinition,
    SensorDefinition,
    asset,
)

from assets.lifecycle.checks import lifecycle_checks
from assets.lifecycle.results import load_results, results_key
from assets.lifecycle.sensor import batch_sensor
from assets.lifecycle.spec import LifecycleSpec, RequestBuilder
from assets.lifecycle.steps import materialize_batch, materialize_requests, materialize_results
from resources.artifacts import ArtifactStore
from resources.batch import default_pool


def accept_backfill_policy() -> None:
    """Silence Dagster's BetaWarning for `backfill_policy` (set at each definition: test
    runners reset the warning filters between tests)."""
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

# Who answers for a flow's assets unless the flow names its own (Dagster takes an email address
# or "team:<name>"; the UI shows them and filters the catalog by them).
DEFAULT_OWNERS: tuple[str, ...] = ("team:ml-platform",)
# Dagster has no description for an asset group: the factory puts the flow's into every one of
# its assets' definition metadata under this key (shown on each asset's page).
GROUP_DESCRIPTION_KEY = "group_description"


@dataclass
class BatchLifecycle:
    """What `batch_lifecycle` defines; pass ``.assets``, ``.sensors``, ``.checks`` to Definitions."""

    spec: LifecycleSpec
    requests: AssetsDefinition
    batch: AssetsDefinition
    results: AssetsDefinition
    sensor: SensorDefinition
    checks: list[AssetChecksDefinition]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def assets(self) -> list[AssetsDefinition]:
        return [self.requests, self.batch, self.results]

    @property
    def sensors(self) -> list[SensorDefinition]:
        return [self.sensor]

    @property
    def results_asset_key(self) -> AssetKey:
        return self.results.key

    def results_key(self, partition_key: str | None) -> str:
        return results_key(self.name, partition_key)

    def load_results(self, artifacts: ArtifactStore, partition_key: str | None, **kw: Any) -> Any:
        return load_results(artifacts, self.name, partition_key, **kw)


def batch_lifecycle(
    name: str,
    partitions_def: PartitionsDefinition | None,
    endpoint: str,
    build_requests: RequestBuilder,
    *,
    params: Mapping[str, Any] | None = None,
    ins: Mapping[str, AssetIn] | None = None,
    deps: Sequence[Any] | None = None,
    requests_resource_keys: Iterable[str] = (),
    batch_resource_key: str = "batch",
    artifacts_resource_key: str = "artifacts",
    group_name: str | None = None,
    group_description: str | None = None,
    owners: Sequence[str] = DEFAULT_OWNERS,
    kinds: Iterable[str] = (),
    pool: str | None = None,
    max_error_rate: float = 0.05,
    batch_metadata: Mapping[str, str] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    sensor_interval_seconds: int = 15,
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    allow_empty: bool = False,
    backfill_policy: BackfillPolicy | None = None,
) -> BatchLifecycle:
    """Define the requests/batch/results assets, the tracking sensor and the checks of a flow.

    * ``<name>_requests`` — ``build_requests(context, **inputs)`` gives the partition's request
      lines (dicts or BatchRequest; `inputs` are the values of `ins`); every line is validated
      before anything is stored, then shards and their pointer go to the artifact store;
    * ``<name>_batch`` — submits one batch per shard, re-attaching to the batches of the same
      submission key (nothing paid twice); changed content cancels the partition's older
      batches; refuses above the resource's budget; waits for room under the in-flight cap;
    * ``<name>_results`` — joins output and error files on custom_id, resubmits failed,
      expired and missing requests up to ``max_attempts``, publishes the results Parquet and
      summary. In blocking mode it waits inside the run (terminating the run cancels the
      batches); otherwise it materializes nothing until the sensor requests it;
    * ``<name>_batch_sensor`` — one paginated list call per tick, progress as observations of
      ``<name>_batch``, the results run of a partition once its batches are terminal;
    * checks ``all_requests_accounted`` and ``error_rate`` (≤ `max_error_rate`).

    `params` (settings not visible in the lines) enter the submission key. ``<name>_batch`` and
    ``<name>_results`` both create batches, so both run in `pool`, by default
    ``batch_submit_<BATCH_PROVIDER>`` (``resources.batch.default_pool``): with the repo's
    ``dagster.yaml`` (one slot per pool) submissions to one provider are serialised, so each
    sees the batches of the one before it and the in-flight cap holds. `batch_metadata` and
    `extra_body` go on every batch create. `allow_empty`: a partition without requests is
    valid (nothing is submitted, its results are an empty table). `backfill_policy` goes on the
    three assets; with ``BackfillPolicy.single_run()`` one run materializes a range of
    partitions (``dagster asset materialize --partition-range``), each its own submission.
    The assets go in the group `group_name` (by default `name`) with `owners`, and
    `group_description` in their metadata (``GROUP_DESCRIPTION_KEY``); `kinds` are added to each
    asset's own (requests: python, jsonl; batch: python, openai; results: parquet).
    """
    spec = LifecycleSpec(
        name=name, partitions_def=partitions_def, endpoint=endpoint,
        build_requests=build_requests, pool=pool or default_pool(), pool_given=pool is not None,
        params=dict(params or {}), batch_resource_key=batch_resource_key,
        artifacts_resource_key=artifacts_resource_key, max_error_rate=max_error_rate,
        batch_metadata=dict(batch_metadata or {}), extra_body=extra_body,
        sensor_interval_seconds=sensor_interval_seconds,
        sensor_default_status=sensor_default_status, allow_empty=allow_empty)
    group = group_name or name
    resource_keys = {batch_resource_key, artifacts_resource_key}
    extra_kinds = set(kinds)
    if backfill_policy is not None:  # a Dagster beta parameter: taken knowingly, not warned about
        accept_backfill_policy()
    shared = {"group_name": group, "owners": list(owners), "metadata": (
        {GROUP_DESCRIPTION_KEY: group_description} if group_description else {})}

    @asset(name=spec.requests_name, partitions_def=partitions_def, ins=dict(ins or {}),
           deps=list(deps or []), required_resource_keys=resource_keys | set(requests_resource_keys),
           kinds={"python", "jsonl"} | extra_kinds, backfill_policy=backfill_policy, **shared,
           description=f"Validated request shards of {name} and their manifest.")
    def requests_asset(context: AssetExecutionContext, **inputs: Any) -> MaterializeResult:
        return materialize_requests(spec, context, inputs)

    @asset(name=spec.batch_name, partitions_def=partitions_def, deps=[requests_asset],
           required_resource_keys=resource_keys, pool=spec.pool,
           kinds={"python", "openai"} | extra_kinds, backfill_policy=backfill_policy, **shared,
           description=f"Batches of {name} at the provider (submitted once per content).")
    def batch_asset(context: AssetExecutionContext) -> MaterializeResult:
        return materialize_batch(spec, context)

    @asset(name=spec.results_name, partitions_def=partitions_def, deps=[batch_asset],
           required_resource_keys=resource_keys, **shared,
           pool=spec.pool,  # it resubmits: the same pool as the batch asset
           output_required=False,  # nothing is materialized while batches are still running
           kinds={"parquet"} | extra_kinds, backfill_policy=backfill_policy,
           description=f"Results of {name}: one row per custom_id (Parquet in the artifact store).")
    def results_asset(context: AssetExecutionContext):
        yield from materialize_results(spec, context)

    return BatchLifecycle(spec, requests_asset, batch_asset, results_asset,
                          batch_sensor(spec, batch_asset, results_asset),
                          lifecycle_checks(spec, results_asset))
