"""``moderation_inbox_sensor``: a run of the flow for each new or changed day file under
``MODERATION_WATCH_URI`` (a backlog that arrives after the 02:00 run, or is corrected)."""

from __future__ import annotations

from assets.automation import sensor_interval
from assets.moderation.partitions import inbox_files, moderation_partitions
from assets.moderation.requests import lifecycle
from assets.moderation.verdicts import moderation_verdicts
from batch_workflows.dagster import inbox_sensor
from batch_workflows.flows.moderation.backlog import day_of
from batch_workflows.flows.sources import SourceFile


def _day_in_partitions(file: SourceFile) -> str | None:
    """The file's day, when it is one of the partitions (not before the start, not today)."""
    day = day_of(file.name)
    return day if day in set(moderation_partitions.get_partition_keys()) else None


moderation_inbox_sensor = inbox_sensor(
    "moderation_inbox_sensor",
    moderation_partitions,
    inbox_files,
    [*lifecycle.assets, moderation_verdicts],
    partition_key=_day_in_partitions,
    minimum_interval_seconds=sensor_interval(30),
    description="Runs the flow for each new or changed <day>.jsonl/.csv/.parquet under "
                "MODERATION_WATCH_URI.",
)
