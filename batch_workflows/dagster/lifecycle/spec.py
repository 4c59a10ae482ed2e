"""What one flow's lifecycle is: the settings ``batch_lifecycle`` was called with."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DefaultSensorStatus, PartitionsDefinition

from batch_workflows.dagster.resources.artifacts import ArtifactStore
from batch_workflows.dagster.resources.batch import BatchResource
from batch_workflows.wire import BatchRequest

RequestBuilder = Callable[..., Iterable[Mapping[str, Any] | BatchRequest]]


@dataclass(frozen=True)
class LifecycleSpec:
    """One flow's lifecycle: its name, partitions, endpoint, request builder and policies.

    `key_prefix` None: flat asset keys ``<name>_requests``, … (this repository's flows); a list
    (empty too): ``[*key_prefix, name, "requests"]``, … The flow's identity in the artifact
    store and in batch metadata is ``name`` under its prefix (``support/ticket_triage``)."""

    flow: str
    partitions_def: PartitionsDefinition | None
    endpoint: str
    build_requests: RequestBuilder
    pool: str
    key_prefix: tuple[str, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)  # the assets', also on sensor runs
    batch_resource_key: str = "batch"
    artifacts_resource_key: str = "artifacts"
    max_error_rate: float = 0.05
    batch_metadata: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None
    sensor_interval_seconds: int = 15
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING
    allow_empty: bool = False  # a partition without requests is valid (nothing is submitted)
    collect_with: tuple[AssetKey, ...] = ()  # downstream assets the sensor's results run adds
    namespace: str | None = None  # None: the batch resource's (a digest of the store's URI)

    @property
    def name(self) -> str:
        """The flow's identity: its folder in the artifact store, its batches' ``bw_asset``."""
        return "/".join([*(self.key_prefix or ()), self.flow])

    def key(self, step: str) -> AssetKey:
        """The asset key of a step (``requests``, ``batch``, ``results``)."""
        if self.key_prefix is None:
            return AssetKey(f"{self.flow}_{step}")
        return AssetKey([*self.key_prefix, self.flow, step])

    @property
    def definition_name(self) -> str:
        """A name for the flow's sensors, unique in a code location (``support__ticket_triage``)."""
        return "__".join([*(self.key_prefix or ()), self.flow])

    @property
    def requests_name(self) -> str:
        return self.key("requests").to_user_string()

    @property
    def batch_name(self) -> str:
        return self.key("batch").to_user_string()

    @property
    def results_name(self) -> str:
        return self.key("results").to_user_string()

    def partition(self, context: Any) -> str | None:
        """The run's partition key (None for an unpartitioned lifecycle)."""
        return context.partition_key if self.partitions_def is not None else None

    def partition_keys(self, context: Any) -> list[str | None]:
        """The run's partition keys: one, or a range's with a single-run backfill policy
        ([None] for an unpartitioned lifecycle)."""
        return list(context.partition_keys) if self.partitions_def is not None else [None]

    def resources(self, context: Any) -> tuple[BatchResource, ArtifactStore]:
        return (getattr(context.resources, self.batch_resource_key),
                getattr(context.resources, self.artifacts_resource_key))

    def store(self, context: Any) -> ArtifactStore:
        return getattr(context.resources, self.artifacts_resource_key)
