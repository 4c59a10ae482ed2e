"""What one flow's lifecycle is: the settings ``batch_lifecycle`` was called with."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import DefaultSensorStatus, PartitionsDefinition

from batch_workflows.wire import BatchRequest
from resources.artifacts import ArtifactStore
from resources.batch import BatchResource

RequestBuilder = Callable[..., Iterable[Mapping[str, Any] | BatchRequest]]


@dataclass(frozen=True)
class LifecycleSpec:
    """One flow's lifecycle: its name, partitions, endpoint, request builder and policies."""

    name: str
    partitions_def: PartitionsDefinition | None
    endpoint: str
    build_requests: RequestBuilder
    pool: str
    pool_given: bool  # False: the pool came from BATCH_PROVIDER, checked against the resource
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_resource_key: str = "batch"
    artifacts_resource_key: str = "artifacts"
    max_error_rate: float = 0.05
    batch_metadata: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] | None = None
    sensor_interval_seconds: int = 15
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING
    allow_empty: bool = False  # a partition without requests is valid (nothing is submitted)

    @property
    def requests_name(self) -> str:
        return f"{self.name}_requests"

    @property
    def batch_name(self) -> str:
        return f"{self.name}_batch"

    @property
    def results_name(self) -> str:
        return f"{self.name}_results"

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

    def check_pool(self, context: Any, batch: BatchResource) -> None:
        """Warn when the step's pool is not the one of the provider it talks to."""
        if not self.pool_given and batch.pool != self.pool:
            context.log.warning(
                f"this step runs in pool {self.pool!r} (BATCH_PROVIDER) but the batch resource "
                f"talks to provider {batch.provider!r}: pass pool={batch.pool!r} to "
                "batch_lifecycle so that all submissions to one provider share one pool")
