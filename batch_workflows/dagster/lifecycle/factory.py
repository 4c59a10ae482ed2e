"""``batch_lifecycle``: the requests → batch → results assets, the tracking sensor and checks.

It only wires: each asset's body is one function of ``batch_workflows.dagster.lifecycle.steps`` calling into
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
    Definitions,
    MaterializeResult,
    PartitionsDefinition,
    SensorDefinition,
    asset,
)

from batch_workflows.dagster.lifecycle.checks import lifecycle_checks
from batch_workflows.dagster.lifecycle.results import load_results, results_key
from batch_workflows.dagster.lifecycle.sensor import batch_sensor
from batch_workflows.dagster.lifecycle.spec import LifecycleSpec, RequestBuilder
from batch_workflows.dagster.lifecycle.steps import (
    materialize_batch,
    materialize_requests,
    materialize_results,
)
from batch_workflows.dagster.resources.artifacts import ArtifactStore
from batch_workflows.dagster.resources.batch import submission_pool


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
    """What `batch_lifecycle` defines: ``.to_definitions()``, or ``.assets``, ``.sensors`` and
    ``.checks`` to combine with a flow's own."""

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

    def to_definitions(self) -> Definitions:
        """The lifecycle as plain Definitions (no resources: bind them once, by key)."""
        return Definitions(assets=self.assets, asset_checks=self.checks, sensors=self.sensors)

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
    key_prefix: str | Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    ins: Mapping[str, AssetIn] | None = None,
    deps: Sequence[Any] | None = None,
    requests_resource_keys: Iterable[str] = (),
    batch_resource_key: str = "batch",
    artifacts_resource_key: str = "artifacts",
    group_name: str | None = None,
    group_description: str | None = None,
    owners: Sequence[str] = DEFAULT_OWNERS,
    tags: Mapping[str, str] | None = None,
    op_tags: Mapping[str, Any] | None = None,
    kinds: Iterable[str] = (),
    pool: str | None = None,
    max_error_rate: float = 0.05,
    batch_metadata: Mapping[str, str] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    sensor_interval_seconds: int = 15,
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    allow_empty: bool = False,
    backfill_policy: BackfillPolicy | None = None,
    collect_with: Sequence[AssetKey] = (),
    namespace: str | None = None,
) -> BatchLifecycle:
    """Define the requests/batch/results assets, the tracking sensor and the checks of a flow.

    Keys: with `key_prefix` (``["support"]`` or ``"support"``), ``support/<name>/requests``,
    ``…/batch``, ``…/results``; without it, flat ``<name>_requests``, ``<name>_batch``,
    ``<name>_results``. Below, ``<name>_<step>`` stands for either.

    * ``<name>_requests`` — ``build_requests(context, **inputs)`` gives the partition's request
      lines (dicts or BatchRequest; `inputs` are the values of `ins`); every line is validated
      before anything is stored, then shards and their pointer go to the artifact store;
    * ``<name>_batch`` — submits one batch per shard, re-attaching to the batches of the same
      submission key (nothing paid twice); changed content cancels the partition's older
      batches; refuses above the resource's budget; waits for room under the in-flight cap
      and the enqueued-token quota (in sensor mode it creates the shards that fit and returns;
      the sensor runs it again as batches end);
    * ``<name>_results`` — joins output and error files on custom_id, resubmits failed,
      expired and missing requests up to ``max_attempts``, publishes the results Parquet and
      summary. In blocking mode it waits inside the run (terminating the run cancels the
      batches); otherwise it materializes nothing until the sensor requests it;
    * ``<name>_batch_sensor`` — one paginated list call per tick, progress as observations of
      ``<name>_batch``, the results run of a partition once its batches are terminal (and,
      while they end one by one, one that stores the ended batches' files), and the batch run
      again while shards wait for room under the quota;
    * checks ``all_requests_accounted`` and ``error_rate`` (≤ `max_error_rate`).

    `params` (settings not visible in the lines) enter the submission key. ``<name>_batch`` and
    ``<name>_results`` both create batches, so both run in `pool`, by default
    ``batch_submit_<batch_resource_key>`` (one pool per bound provider), which the lifecycle
    gives one slot unless the instance already has a limit for it (``concurrency.ensure_pool``):
    submissions to one provider are serialised, so each sees the batches of the one before it
    and the in-flight cap holds. `tags` go on the assets (and the runs the sensor requests);
    `op_tags` on their ops (e.g. ``{"dagster-k8s/config": …}`` for a builder reading millions
    of rows). `batch_metadata` and
    `extra_body` go on every batch create. `allow_empty`: a partition without requests is
    valid (nothing is submitted, its results are an empty table). `backfill_policy` goes on the
    three assets; with ``BackfillPolicy.single_run()`` one run materializes a range of
    partitions (``dagster asset materialize --partition-range``), each its own submission.
    The assets go in the group `group_name` (by default `name`, after the prefix: ``support__
    ticket_triage``) with `owners`, and
    `group_description` in their metadata (``GROUP_DESCRIPTION_KEY``); `kinds` are added to each
    asset's own (requests: python, jsonl; batch: python, openai; results: parquet).
    `collect_with`: downstream assets the sensor's results run materializes too (a flow's
    output), so that a collected partition reaches its output with no automation sensor.
    `namespace`: this flow's part of its batches' identity at the provider, in place of the
    batch resource's (re-attach, cancel and tracking touch only that namespace's batches).
    """
    prefix = None if key_prefix is None else (
        (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix))
    spec = LifecycleSpec(
        flow=name, partitions_def=partitions_def, endpoint=endpoint,
        build_requests=build_requests, pool=pool or submission_pool(batch_resource_key),
        key_prefix=prefix, params=dict(params or {}), tags=dict(tags or {}),
        batch_resource_key=batch_resource_key,
        artifacts_resource_key=artifacts_resource_key, max_error_rate=max_error_rate,
        batch_metadata=dict(batch_metadata or {}), extra_body=extra_body,
        sensor_interval_seconds=sensor_interval_seconds,
        sensor_default_status=sensor_default_status, allow_empty=allow_empty,
        collect_with=tuple(collect_with), namespace=namespace)
    group = group_name or spec.definition_name
    resource_keys = {batch_resource_key, artifacts_resource_key}
    extra_kinds = set(kinds)
    if backfill_policy is not None:  # a Dagster beta parameter: taken knowingly, not warned about
        accept_backfill_policy()
    shared = {"group_name": group, "owners": list(owners), "tags": dict(tags or {}),
              "op_tags": dict(op_tags or {}), "metadata": (
                  {GROUP_DESCRIPTION_KEY: group_description} if group_description else {})}

    @asset(key=spec.key("requests"), partitions_def=partitions_def, ins=dict(ins or {}),
           deps=list(deps or []), required_resource_keys=resource_keys | set(requests_resource_keys),
           kinds={"python", "jsonl"} | extra_kinds, backfill_policy=backfill_policy, **shared,
           description=f"Validated request shards of {name} and their manifest.")
    def requests_asset(context: AssetExecutionContext, **inputs: Any) -> MaterializeResult:
        return materialize_requests(spec, context, inputs)

    @asset(key=spec.key("batch"), partitions_def=partitions_def, deps=[requests_asset],
           required_resource_keys=resource_keys, pool=spec.pool,
           kinds={"python", "openai"} | extra_kinds, backfill_policy=backfill_policy, **shared,
           description=f"Batches of {name} at the provider (submitted once per content).")
    def batch_asset(context: AssetExecutionContext) -> MaterializeResult:
        return materialize_batch(spec, context)

    @asset(key=spec.key("results"), partitions_def=partitions_def, deps=[batch_asset],
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
