"""The distillation flow's requests, wired to the lifecycle: ``distillation_requests``,
``distillation_batch``, ``distillation_results`` and the batch sensor come from
`batch_lifecycle`.

The builder reads the partition's prompts and makes ``DISTILLATION_SAMPLES`` chat requests per
prompt for the teacher ``DISTILLATION_MODEL``; beside the shards it stores the prompt table
(``distillation/<partition>/prompts.parquet``) and what the requests were built with
(``prompts.json``: counts, model, sampling), which the dataset step reads back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from dagster import AssetExecutionContext

from assets.automation import sensor_interval
from assets.distillation.partitions import (
    GROUP_DESCRIPTION,
    NAME,
    OWNERS,
    distillation_partitions,
    settings,
)
from batch_workflows.dagster import ArtifactStore, batch_lifecycle
from batch_workflows.flows.distillation.prompts import prompts_for_key
from batch_workflows.flows.distillation.requests import (
    PromptTableWriter,
    build_requests,
    request_settings,
)
from batch_workflows.lifecycle import PartitionLayout
from batch_workflows.profiles import CHAT
from batch_workflows.s3 import s3_client_for


def prompt_table_key(partition_key: str) -> str:
    return PartitionLayout(NAME, partition_key).file("prompts.parquet")


def prompt_stats_key(partition_key: str) -> str:
    return PartitionLayout(NAME, partition_key).file("prompts.json")


def build_distillation_requests(context: AssetExecutionContext) -> Iterator[dict[str, Any]]:
    """The requests of one prompt source; stores the prompt table once all are built."""
    s = settings()
    pkey = context.partition_key
    store: ArtifactStore = context.resources.artifacts
    prompts = prompts_for_key(pkey, s, s3_client=s3_client_for(s.watch_uri))
    with tempfile.TemporaryDirectory(prefix="bw-prompts-") as tmp:
        table = PromptTableWriter(Path(tmp) / "prompts.parquet")
        try:
            yield from build_requests(prompts, s, table)
        finally:
            table.close()
        store.put_file(table.path, prompt_table_key(pkey))
        stats = {**table.stats(), "teacher": request_settings(s)}
        store.write_bytes(prompt_stats_key(pkey), orjson.dumps(stats, option=orjson.OPT_INDENT_2))
        context.log.info(
            f"{pkey}: {table.prompts} prompts → {table.requests} requests to {s.model} "
            f"({table.repeats} repeated prompts not sent)")


lifecycle = batch_lifecycle(
    NAME,
    distillation_partitions,
    CHAT,
    build_distillation_requests,
    group_name=NAME,
    group_description=GROUP_DESCRIPTION,
    owners=OWNERS,
    sensor_interval_seconds=sensor_interval(15),
)
