"""The moderation flow's requests, wired to the lifecycle: ``moderation_requests``,
``moderation_batch``, ``moderation_results`` and the batch sensor come from `batch_lifecycle`.

One submission per day (a failure stays in its day); a day with no backlog is an empty
partition (nothing submitted). The strategy (``MODERATION_STRATEGY``) picks the endpoint when
the code location loads; the builder refuses to run under another one, so a changed setting
needs a reload, never a silent mix.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy

from assets.automation import sensor_interval
from assets.moderation.partitions import (
    GROUP_DESCRIPTION,
    NAME,
    OWNERS,
    moderation_partitions,
    settings,
)
from batch_workflows.dagster import ArtifactStore, batch_lifecycle
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.moderation.backlog import day_file, read_backlog
from batch_workflows.flows.moderation.items import ItemTableWriter
from batch_workflows.flows.moderation.requests import day_requests
from batch_workflows.lifecycle import PartitionLayout
from batch_workflows.s3 import s3_client_for


def items_key(day: str) -> str:
    """Artifact key of a day's item table."""
    return PartitionLayout(NAME, day).file("items.parquet")


def build_moderation_requests(context: AssetExecutionContext) -> Iterator[dict[str, Any]]:
    """The requests of one day's backlog; stores the item table once all are built."""
    s = settings()
    day = context.partition_key
    if s.strategy != STRATEGY:
        raise ConfigurationError(
            f"MODERATION_STRATEGY is {s.strategy!r} but the code location was loaded with "
            f"{STRATEGY!r}; reload it (the strategy picks the batch endpoint)")
    store: ArtifactStore = context.resources.artifacts
    policy = s.policy()
    judge = s.judge(policy, calibrated=False)
    s3 = s3_client_for(s.watch_uri)
    source = day_file(s.watch_uri, day, s3_client=s3)
    items = read_backlog(source.uri, policy.names, s3_client=s3) if source else iter(())
    with tempfile.TemporaryDirectory(prefix="bw-items-") as tmp:
        table = ItemTableWriter(Path(tmp) / "items.parquet")
        try:
            yield from day_requests(items, table, judge)
        finally:
            table.close()
        store.put_file(table.path, items_key(day))
    context.log.info(f"{day}: {table.items} item(s) ({table.labelled} labelled) from "
                     f"{source.uri if source else 'no backlog file'}; strategy {judge.strategy}, "
                     f"model {judge.model}, policy {policy.name} {policy.version}")


def _loaded() -> tuple[str, str, dict[str, Any]]:
    s = settings()
    policy = s.policy()
    judge = s.judge(policy, calibrated=False)
    return s.strategy, judge.endpoint, judge.params()


STRATEGY, ENDPOINT, PARAMS = _loaded()

lifecycle = batch_lifecycle(
    NAME,
    moderation_partitions,
    ENDPOINT,
    build_moderation_requests,
    params=PARAMS,
    group_name=NAME,
    group_description=GROUP_DESCRIPTION,
    owners=OWNERS,
    sensor_interval_seconds=sensor_interval(15),
    allow_empty=True,  # a day with no backlog is a day with no items
    backfill_policy=BackfillPolicy.single_run(),  # `--partition-range` runs the range in one run
)
