"""``distillation_inbox_sensor``: a partition, and a run of the flow, for each new or changed
prompt file under ``DISTILLATION_WATCH_URI``; its ticks also register the shipped sample's
partitions."""

from __future__ import annotations

from assets.automation import sensor_interval
from assets.distillation.dataset import distillation_dataset
from assets.distillation.partitions import (
    distillation_partitions,
    inbox_files,
    sample_partition_keys,
)
from assets.distillation.requests import lifecycle
from batch_workflows.dagster import inbox_sensor

distillation_inbox_sensor = inbox_sensor(
    "distillation_inbox_sensor",
    distillation_partitions,
    inbox_files,
    [*lifecycle.assets, distillation_dataset],
    extra_partitions=sample_partition_keys,
    minimum_interval_seconds=sensor_interval(30),
    description="Adds a partition (and runs the flow) for each new or changed prompt file under "
    "DISTILLATION_WATCH_URI; registers the shipped sample's partitions.",
)
