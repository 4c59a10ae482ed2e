"""The distillation flow's definitions, from a `DistillationComponent` (moved from the
repository's assets/distillation): the lifecycle, ``<flow>_dataset`` (results → train/validation
JSONL, metadata, card) and its checks, and the inbox sensor.

The builder makes `samples` chat requests per prompt for the teacher; beside the shards it
stores the prompt table (``<flow>/<partition>/prompts.parquet``) and what the requests were
built with (``prompts.json``). Dataset files go under ``<flow>/<partition>/dataset/``; changing
a filter, split or format setting needs only the dataset re-materialized.
"""

# No `from __future__ import annotations`: Dagster reads the context annotations of asset and
# check functions at definition time and refuses them as strings.
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    Definitions,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from batch_workflows.dagster.components.flows.distillation import checks as dataset_checks
from batch_workflows.dagster.components.flows.file_partitions import FilePartitions
from batch_workflows.dagster.lifecycle.factory import batch_lifecycle
from batch_workflows.dagster.lifecycle.results import fetch_results
from batch_workflows.flows.distillation.card import card_data, readme
from batch_workflows.flows.distillation.dataset import FILES, build_dataset
from batch_workflows.flows.distillation.filters import DROP_REASONS
from batch_workflows.flows.distillation.prompts import PROMPT_SUFFIXES, SAMPLE_KEYS, prompts_for_key
from batch_workflows.flows.distillation.requests import (
    PromptTableWriter,
    build_requests,
    request_settings,
)
from batch_workflows.lifecycle import PartitionLayout, read_summary
from batch_workflows.profiles import CHAT
from batch_workflows.s3 import s3_client_for

FILE_TEXT = {
    "train.jsonl": "training examples, one per line",
    "validation.jsonl": "validation examples, one per line",
    "metadata.parquet": "per line: split, line, custom_id, prompt_id, sample, source, "
                        "source_line, task, teacher_model, tokens, finish_reason",
    "dropped.parquet": "per dropped request: custom_id, prompt_id, reason, status, finish_reason",
    "card.json": "every count of this card",
    "README.md": "this card",
}


class DistillationFlow(FilePartitions):
    """One distillation flow: `lifecycle`, `dataset`, `checks` (each also by its name),
    `inbox_sensor`, `partitions_def`; a partition per prompt file and per shipped sample
    (`FilePartitions`)."""

    SUFFIXES = PROMPT_SUFFIXES

    def __init__(self, component: Any):
        self.c = component
        self.settings = component.settings()
        self.partitions_def = DynamicPartitionsDefinition(
            name=f"{component.definition_name}_sources")
        self.lifecycle = batch_lifecycle(
            component.name, self.partitions_def, CHAT, self.build_requests,
            group_description=component.group_description, **component.lifecycle_options())
        self.name = self.lifecycle.spec.name
        self.dataset = self._dataset_asset()
        # Each check by name (tests and subclasses reach one without counting positions).
        self.lines_valid_for_fine_tuning = self._check(dataset_checks.CHECK_VALID,
                                                       dataset_checks.lines_valid)
        self.no_prompt_in_both_splits = self._check(dataset_checks.CHECK_SPLITS,
                                                    dataset_checks.splits_disjoint)
        self.enough_training_examples = self._check(dataset_checks.CHECK_MINIMUM,
                                                    dataset_checks.enough_examples)
        self.counts_add_up = self._check(dataset_checks.CHECK_COUNTS, self._counts)
        self.checks = [self.lines_valid_for_fine_tuning, self.no_prompt_in_both_splits,
                       self.enough_training_examples, self.counts_add_up]
        self.inbox_sensor = self.file_inbox_sensor(component, self.dataset,
                                                   "the shipped sample's partitions")

    # -- partitions ------------------------------------------------------------------------------
    def shipped_partition_keys(self) -> list[str]:
        """The shipped sample's partitions: they exist without a file."""
        return list(SAMPLE_KEYS) if self.c.shipped_samples else []

    # -- artifacts --------------------------------------------------------------------------------
    def prompt_table_key(self, partition_key: str) -> str:
        return PartitionLayout(self.name, partition_key).file("prompts.parquet")

    def prompt_stats_key(self, partition_key: str) -> str:
        return PartitionLayout(self.name, partition_key).file("prompts.json")

    def dataset_key(self, partition_key: str, filename: str) -> str:
        return PartitionLayout(self.name, partition_key).file(f"dataset/{filename}")

    def _store(self, context: Any) -> Any:
        return getattr(context.resources, self.c.artifacts_resource_key)

    # -- definitions ------------------------------------------------------------------------------
    def build_requests(self, context: AssetExecutionContext):
        """The requests of one prompt source; stores the prompt table once all are built."""
        s = self.settings
        pkey = context.partition_key
        store = self._store(context)
        prompts = prompts_for_key(pkey, s, s3_client=s3_client_for(s.watch_uri))
        with tempfile.TemporaryDirectory(prefix="bw-prompts-") as tmp:
            table = PromptTableWriter(Path(tmp) / "prompts.parquet")
            try:
                yield from build_requests(prompts, s, table)
            finally:
                table.close()
            store.put_file(table.path, self.prompt_table_key(pkey))
            stats = {**table.stats(), "teacher": request_settings(s)}
            store.write_bytes(self.prompt_stats_key(pkey),
                              orjson.dumps(stats, option=orjson.OPT_INDENT_2))
            context.log.info(
                f"{pkey}: {table.prompts} prompts → {table.requests} requests to {s.model} "
                f"({table.repeats} repeated prompts not sent)")

    def _dataset_asset(self):
        flow, c = self, self.c

        @asset(
            **c.output_asset_options(self.lifecycle, "dataset"),
            kinds={"jsonl"},
            required_resource_keys={c.artifacts_resource_key},
            automation_condition=AutomationCondition.eager(),
            description="Supervised fine-tuning dataset (train/validation JSONL, metadata, card) "
                        "from the partition's teacher answers, every drop counted by reason.",
        )
        def dataset(context: AssetExecutionContext) -> MaterializeResult:
            return flow.write_dataset(context)

        return dataset

    def write_dataset(self, context: AssetExecutionContext) -> MaterializeResult:
        s, artifacts, pkey = self.settings, self._store(context), context.partition_key
        with tempfile.TemporaryDirectory(prefix="bw-dataset-") as tmp:
            results = fetch_results(artifacts, self.name, pkey, Path(tmp) / "results.parquet")
            table = artifacts.get_file(self.prompt_table_key(pkey), Path(tmp) / "prompts.parquet")
            out = Path(tmp) / "dataset"
            report = build_dataset(table, results, out, s)
            card = card_data(report.to_dict(), partition=pkey, settings=s,
                             summary=read_summary(artifacts, self.name, pkey),
                             prompts=json.loads(artifacts.read_bytes(self.prompt_stats_key(pkey))),
                             files=FILE_TEXT)
            text = readme(card)
            (out / "card.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
            (out / "README.md").write_text(text, encoding="utf-8")
            for name in FILE_TEXT:
                artifacts.put_file(out / name, self.dataset_key(pkey, name))
        context.log.info(f"{pkey}: {card['kept']} examples kept of {card['requests_submitted']} "
                         f"requests; dropped {card['dropped']}")
        return MaterializeResult(metadata=self._metadata(card, text, artifacts, pkey))

    def _metadata(self, card: dict[str, Any], text: str, artifacts: Any,
                  pkey: str) -> dict[str, Any]:
        completion = card["tokens"]["completion"]
        metadata: dict[str, Any] = {
            "requests_submitted": card["requests_submitted"],
            "kept": card["kept"],
            "train": card["splits"]["train"],
            "validation": card["splits"]["validation"],
            **{f"dropped_{reason}": card["dropped"][reason] for reason in DROP_REASONS},
            "counts_add_up": card["adds_up"],
            "teacher": card["teacher"]["model"],
            "format": card["format"],
            "completion_tokens_p5_p50_p95": MetadataValue.json(
                [completion["p5"], completion["p50"], completion["p95"]]),
            "train_path": MetadataValue.path(
                artifacts.uri(self.dataset_key(pkey, FILES["train"]))),
            "validation_path": MetadataValue.path(
                artifacts.uri(self.dataset_key(pkey, FILES["validation"]))),
            "card": MetadataValue.md(text),
        }
        if card["cost_usd_batch_rate"] is not None:
            metadata["cost_usd_batch_rate"] = float(card["cost_usd_batch_rate"])
        return metadata

    def _fetcher(self, context: Any):
        artifacts, pkey = self._store(context), context.partition_key
        return lambda filename, tmp: artifacts.get_file(self.dataset_key(pkey, filename),
                                                        Path(tmp) / filename)

    def _counts(self, fetch: Any, context: Any = None) -> AssetCheckResult:
        summary = read_summary(self._store(context), self.name, context.partition_key)
        return dataset_checks.counts_add_up(fetch, summary)

    def _check(self, name: str, body: Any):
        flow, c = self, self.c
        needs_context = body == self._counts

        @asset_check(asset=self.dataset, name=name, partitions_def=self.partitions_def,
                     required_resource_keys={c.artifacts_resource_key},
                     description=dataset_checks.DESCRIPTIONS[name])
        def check(context: AssetCheckExecutionContext) -> AssetCheckResult:
            fetch = flow._fetcher(context)
            return body(fetch, context) if needs_context else body(fetch)

        return check

    def definitions(self) -> Definitions:
        return Definitions(assets=[*self.lifecycle.assets, self.dataset],
                           asset_checks=[*self.lifecycle.checks, *self.checks],
                           sensors=[*self.lifecycle.sensors, self.inbox_sensor])
