"""``moderation_daily_schedule``: at 02:00 UTC, off-peak, the flow for the day that just ended."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from assets.moderation.partitions import NAME

moderation_daily_job = define_asset_job(
    "moderation_daily_job", selection=AssetSelection.groups(NAME),
    description="The moderation flow for one day: requests, batch, results, verdicts.")

# The job's partitions are daily in UTC: the tick at 02:00 UTC runs the previous day's partition.
moderation_daily_schedule = build_schedule_from_partitioned_job(
    moderation_daily_job, hour_of_day=2, minute_of_hour=0,
    name="moderation_daily_schedule", default_status=DefaultScheduleStatus.RUNNING)
