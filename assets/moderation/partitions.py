"""The moderation flow's partitions: one per UTC day, from ``MODERATION_START_DATE``.

A day's backlog is the file ``<day>.jsonl`` (or ``.csv`` / ``.parquet``) under
``MODERATION_WATCH_URI``; a day without one is a valid partition with no items.
"""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

from batch_workflows.flows.moderation.backlog import backlog_files
from batch_workflows.flows.moderation.settings import ModerationSettings
from batch_workflows.flows.sources import SourceFile
from batch_workflows.s3 import s3_client_for

NAME = "moderation"  # the flow's name: its assets' prefix and its folder in the artifact store
# The asset group's description (in every asset's metadata: Dagster has no group descriptions)
# and who answers for the flow.
GROUP_DESCRIPTION = (
    "Content moderation by UTC day: the day's items judged against the policy through chat or "
    "embeddings batches (llm or embedding strategy), verdicts and flagged items as Parquet, "
    "with accuracy against labels; one partition per day."
)
OWNERS = ("team:trust-safety",)


def settings() -> ModerationSettings:
    """The flow's settings, read from the environment at each use."""
    return ModerationSettings.from_env()


moderation_partitions = DailyPartitionsDefinition(
    start_date=settings().start_date, timezone="UTC", fmt="%Y-%m-%d")


def inbox_files() -> list[SourceFile]:
    """The day files under ``MODERATION_WATCH_URI``."""
    watch_uri = settings().watch_uri
    return backlog_files(watch_uri, s3_client=s3_client_for(watch_uri))
