"""The moderation flow: a day's backlog → a provider batch off-peak → verdicts and flagged items.

Partitioned by UTC day (`partitions.py`). The modules, in the order data flows:

* `requests.py` — ``moderation_requests`` / ``moderation_batch`` / ``moderation_results`` from
  the lifecycle factory (one submission per day; a day without backlog submits nothing);
* `verdicts.py` — ``moderation_verdicts`` and its check ``moderation_accuracy``;
* `schedules.py` — ``moderation_daily_schedule``: 02:00 UTC, the previous day;
* `sensors.py` — ``moderation_inbox_sensor``: a new or changed day file is a run.

Every asset has a single-run backfill policy, so a range of days is one run from the command
line (``dagster asset materialize --partition-range``) and from the UI, each day its own batch.
`defs` holds them without resources (the code location provides batch and artifacts).
"""

from dagster import Definitions

from assets.moderation.partitions import NAME, moderation_partitions, settings
from assets.moderation.requests import lifecycle
from assets.moderation.schedules import moderation_daily_job, moderation_daily_schedule
from assets.moderation.sensors import moderation_inbox_sensor
from assets.moderation.verdicts import moderation_accuracy, moderation_verdicts, verdicts_key

defs = Definitions(
    assets=[*lifecycle.assets, moderation_verdicts],
    asset_checks=[*lifecycle.checks, moderation_accuracy],
    jobs=[moderation_daily_job],
    schedules=[moderation_daily_schedule],
    sensors=[*lifecycle.sensors, moderation_inbox_sensor],
)

__all__ = [
    "NAME",
    "defs",
    "lifecycle",
    "moderation_accuracy",
    "moderation_daily_job",
    "moderation_daily_schedule",
    "moderation_inbox_sensor",
    "moderation_partitions",
    "moderation_verdicts",
    "settings",
    "verdicts_key",
]
