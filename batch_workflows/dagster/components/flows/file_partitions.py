"""``FilePartitions``: the dynamic partitions of a flow whose sources are the files of an inbox
(a folder or an ``s3://`` prefix), plus keys it ships that exist without a file.

The embeddings and distillation flows share it (their partitions differ only in which files
they read and which keys they ship); a flow sets `SUFFIXES` and overrides
`shipped_partition_keys`, and needs `settings.watch_uri` and `partitions_def`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from batch_workflows.dagster.components.flows.base import register_dynamic_partitions
from batch_workflows.dagster.inbox import inbox_sensor
from batch_workflows.flows.sources import SourceFile, list_source_files
from batch_workflows.s3 import s3_client_for


class FilePartitions:
    """One partition per inbox file and per shipped key; registration of those keys."""

    SUFFIXES: ClassVar[tuple[str, ...]] = ()
    settings: Any
    partitions_def: Any
    lifecycle: Any

    def shipped_partition_keys(self) -> list[str]:
        """Keys that exist without a file (a shipped corpus or sample); none by default."""
        return []

    def inbox_files(self) -> list[SourceFile]:
        """The files under `watch_uri` that the flow reads, each a partition."""
        watch_uri = self.settings.watch_uri
        return list_source_files(watch_uri, suffixes=self.SUFFIXES,
                                 s3_client=s3_client_for(watch_uri))

    def partition_keys(self) -> list[str]:
        """Every partition the flow has now: the shipped keys, then one per inbox file."""
        return self.shipped_partition_keys() + [f.name for f in self.inbox_files()]

    def file_inbox_sensor(self, component: Any, output: Any, shipped: str) -> Any:
        """The inbox sensor: a partition and a run of the lifecycle and `output` for each new
        or changed file; its ticks also register the `shipped` keys."""
        return inbox_sensor(
            f"{component.definition_name}_inbox_sensor", self.partitions_def, self.inbox_files,
            [*self.lifecycle.assets, output], extra_partitions=self.shipped_partition_keys,
            minimum_interval_seconds=component.inbox_interval_seconds,
            default_status=component.inbox_status,
            description=f"Adds a partition (and runs the flow) for each new or changed file "
                        f"under {self.settings.watch_uri}; registers {shipped}.")

    def register_partitions(self, instance: Any, keys: Iterable[str] | None = None) -> list[str]:
        """Add the partitions among `keys` (default: `partition_keys()`) the instance lacks;
        returns the keys added."""
        keys = self.partition_keys() if keys is None else list(keys)
        return register_dynamic_partitions(instance, {self.partitions_def.name: keys})
