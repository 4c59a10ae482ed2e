"""The moderation flow's definitions, from a `ModerationComponent` (moved from the repository's
assets/moderation): the lifecycle (one submission per day; a day without backlog submits
nothing), ``<flow>_verdicts`` and its check ``moderation_accuracy``, the daily job and schedule
(the previous UTC day), and the inbox sensor (a new or changed day file is a run).

Every asset has a single-run backfill policy, so a range of days is one run, each day its own
batch. Verdicts: one per item (verdicts.parquet), the flagged items (flagged.parquet), the
day's figures as metadata; with labels, precision, recall, F1 and the keyword baseline's F1.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotations of asset
# and check functions at definition time and refuses them as strings.
import dataclasses
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    Definitions,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    asset,
    asset_check,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from batch_workflows import lifecycle as lc
from batch_workflows.dagster.inbox import inbox_sensor
from batch_workflows.dagster.lifecycle.factory import (
    accept_backfill_policy,
    batch_lifecycle,
)
from batch_workflows.dagster.lifecycle.metadata import combined_metadata
from batch_workflows.dagster.lifecycle.results import fetch_results
from batch_workflows.flows.moderation.backlog import backlog_files, day_file, day_of, read_backlog
from batch_workflows.flows.moderation.items import ItemTableWriter
from batch_workflows.flows.moderation.metrics import Confusion
from batch_workflows.flows.moderation.requests import day_requests
from batch_workflows.flows.moderation.verdicts import VerdictReport, write_verdicts
from batch_workflows.flows.sources import SourceFile
from batch_workflows.s3 import s3_client_for

CHECK_ACCURACY = "moderation_accuracy"
VERDICTS, FLAGGED, REPORT = "verdicts.parquet", "flagged.parquet", "verdicts.json"

# Partitioned asset checks are a Dagster preview feature: accepted knowingly.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*",
                        category=PreviewWarning)


class ModerationFlow:
    """One moderation flow: `lifecycle`, `verdicts`, `accuracy`, `job`, `schedule`,
    `inbox_sensor`, `partitions_def`."""

    def __init__(self, component: Any):
        self.c = component
        self.settings = component.settings()
        policy = self.settings.policy()
        judge = self.settings.judge(policy, calibrated=False)  # a bad policy fails at load
        self.partitions_def = DailyPartitionsDefinition(
            start_date=self.settings.start_date, timezone="UTC", fmt="%Y-%m-%d")
        accept_backfill_policy()
        self.lifecycle = batch_lifecycle(
            component.name, self.partitions_def, judge.endpoint, self.build_requests,
            params=judge.params(), group_description=component.group_description,
            allow_empty=True,  # a day with no backlog is a day with no items
            backfill_policy=BackfillPolicy.single_run(),  # a range is one run
            **component.lifecycle_options())
        self.name = self.lifecycle.spec.name
        self.verdicts = self._verdicts_asset()
        self.accuracy = self._accuracy_check()
        self.checks = [self.accuracy]
        prefix = component.definition_name
        self.job = define_asset_job(
            f"{prefix}_daily_job", selection=[*(a.key for a in self.lifecycle.assets),
                                              self.verdicts.key],
            partitions_def=self.partitions_def,
            description=f"The {component.name} flow for one day: requests, batch, results, "
                        "verdicts.")
        self.schedules = []
        if component.schedule is not None:
            s = component.schedule
            # The job's partitions are daily in UTC: a tick runs the previous day's partition.
            self.schedules.append(build_schedule_from_partitioned_job(
                self.job, hour_of_day=s.hour_of_day, minute_of_hour=s.minute_of_hour,
                name=f"{prefix}_daily_schedule",
                default_status=(DefaultScheduleStatus.RUNNING if s.default_status == "running"
                                else DefaultScheduleStatus.STOPPED)))
        self.inbox_sensor = inbox_sensor(
            f"{prefix}_inbox_sensor", self.partitions_def, self.inbox_files,
            [*self.lifecycle.assets, self.verdicts], partition_key=self._day_in_partitions,
            minimum_interval_seconds=component.inbox_interval_seconds,
            default_status=component.inbox_status,
            description=f"Runs the flow for each new or changed <day>.jsonl/.csv/.parquet under "
                        f"{self.settings.watch_uri}.")

    # -- partitions -------------------------------------------------------------------------------
    def inbox_files(self) -> list[SourceFile]:
        watch_uri = self.settings.watch_uri
        return backlog_files(watch_uri, s3_client=s3_client_for(watch_uri))

    def _day_in_partitions(self, file: SourceFile) -> str | None:
        """The file's day, when it is one of the partitions (not before the start, not today)."""
        day = day_of(file.name)
        return day if day in set(self.partitions_def.get_partition_keys()) else None

    # -- artifacts --------------------------------------------------------------------------------
    def items_key(self, day: str) -> str:
        return lc.PartitionLayout(self.name, day).file("items.parquet")

    def verdicts_key(self, day: str, file: str = VERDICTS) -> str:
        return lc.PartitionLayout(self.name, day).file(file)

    def _store(self, context: Any) -> Any:
        return getattr(context.resources, self.c.artifacts_resource_key)

    # -- definitions ------------------------------------------------------------------------------
    def build_requests(self, context: AssetExecutionContext):
        """The requests of one day's backlog; stores the item table once all are built."""
        s = self.settings
        day = context.partition_key
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
            self._store(context).put_file(table.path, self.items_key(day))
        context.log.info(f"{day}: {table.items} item(s) ({table.labelled} labelled) from "
                         f"{source.uri if source else 'no backlog file'}; strategy "
                         f"{judge.strategy}, model {judge.model}, policy {policy.name} "
                         f"{policy.version}")

    def _verdicts_asset(self):
        flow, c = self, self.c

        @asset(
            **c.output_asset_options(self.lifecycle, "verdicts"),
            kinds={"parquet"},
            required_resource_keys={c.artifacts_resource_key},
            backfill_policy=BackfillPolicy.single_run(),
            # eager() alone takes only the latest day: a backfill of older days would stop at
            # results.
            automation_condition=AutomationCondition.eager().without(
                AutomationCondition.in_latest_time_window()),
            description="One verdict per item of the day (verdicts.parquet) and the flagged "
                        "items with their text (flagged.parquet); accuracy against labels when "
                        "the backlog has them.",
        )
        def verdicts(context: AssetExecutionContext) -> MaterializeResult:
            per_day = [(day, flow.verdicts_of_day(context, day)) for day in context.partition_keys]
            return MaterializeResult(metadata=combined_metadata(per_day))

        return verdicts

    def verdicts_of_day(self, context: AssetExecutionContext, day: str) -> dict[str, Any]:
        artifacts = self._store(context)
        pointer = lc.read_pointer(artifacts, self.name, day)
        # The strategy the day was submitted with, not today's.
        s = dataclasses.replace(self.settings,
                                strategy=pointer.params.get("strategy", self.settings.strategy))
        policy = s.policy()
        judge = s.judge(policy, calibrated=True)
        with tempfile.TemporaryDirectory(prefix="bw-verdicts-") as tmp:
            work = Path(tmp)
            results = fetch_results(artifacts, self.name, day, work / "results.parquet")
            items = artifacts.get_file(self.items_key(day), work / "items.parquet")
            report = write_verdicts(items, results, judge, work / VERDICTS, work / FLAGGED,
                                    work_dir=work)
            uri = artifacts.put_file(work / VERDICTS, self.verdicts_key(day))
            artifacts.put_file(work / FLAGGED, self.verdicts_key(day, FLAGGED))
        summary = lc.read_summary(artifacts, self.name, day)
        data = report.to_dict()
        data["cost_usd_batch_rate"] = None if summary.cost_usd is None else float(summary.cost_usd)
        artifacts.write_bytes(self.verdicts_key(day, REPORT),
                              orjson.dumps(data, option=orjson.OPT_INDENT_2))
        context.log.info(f"{day}: {report.items} items, {data['flagged']} flagged, "
                         f"{data['unparsed']} unparsed, {data['failed']} failed ({report.strategy})")
        return verdict_metadata(report, data, uri)

    def _accuracy_check(self):
        flow, c = self, self.c

        @asset_check(asset=self.verdicts, name=CHECK_ACCURACY, partitions_def=self.partitions_def,
                     required_resource_keys={c.artifacts_resource_key},
                     description=f"F1 of flagged vs safe on the labelled items ≥ {c.min_f1} (a "
                                 "day without labels passes: nothing to measure).")
        def moderation_accuracy(context: AssetCheckExecutionContext) -> AssetCheckResult:
            return flow.accuracy_of(context)

        return moderation_accuracy

    def accuracy_of(self, context: AssetCheckExecutionContext) -> AssetCheckResult:
        artifacts = self._store(context)
        floor = self.settings.min_f1
        total = Confusion()
        not_scored = 0
        for day in context.partition_keys:
            data = json.loads(artifacts.read_bytes(self.verdicts_key(day, REPORT)))
            ev = data.get("evaluation")
            if ev:
                f = ev["flagged_vs_safe"]
                total.tp, total.fp = total.tp + f["tp"], total.fp + f["fp"]
                total.fn, total.tn = total.fn + f["fn"], total.tn + f["tn"]
                not_scored += ev["not_scored"]
        scored = total.tp + total.fp + total.fn + total.tn
        f1 = total.f1
        return AssetCheckResult(
            passed=scored == 0 or (f1 is not None and f1 >= floor),
            metadata={"floor": floor, "f1": f1 if f1 is not None else 0.0, "scored": scored,
                      "not_scored": not_scored, "precision": total.precision or 0.0,
                      "recall": total.recall or 0.0, "fpr": total.fpr or 0.0,
                      "labelled": scored > 0 or not_scored > 0},
        )

    def definitions(self) -> Definitions:
        return Definitions(assets=[*self.lifecycle.assets, self.verdicts],
                           asset_checks=[*self.lifecycle.checks, *self.checks], jobs=[self.job],
                           schedules=self.schedules,
                           sensors=[*self.lifecycle.sensors, self.inbox_sensor])


def verdict_metadata(report: VerdictReport, data: dict[str, Any], uri: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "items": data["items"], "ok": data["ok"], "unparsed": data["unparsed"],
        "failed": data["failed"], "flagged": data["flagged"],
        "flagged_rate": data["flagged_rate"],
        "per_category": MetadataValue.json(data["per_category"]),
        "strategy": report.strategy, "model": report.model,
        "policy": f"{report.policy} {report.policy_version}",
        "unparsed_sample": MetadataValue.json(data["unparsed_sample"]),
        "failed_sample": MetadataValue.json(data["failed_sample"]),
        "path": MetadataValue.path(uri),
    }
    if data["cost_usd_batch_rate"] is not None:
        metadata["cost_usd_batch_rate"] = data["cost_usd_batch_rate"]
    ev = report.evaluation
    if ev is not None:
        figures = ev.flagged.figures()
        metadata.update({
            "labelled": ev.labelled, "scored": ev.scored, "not_scored": ev.not_scored,
            "precision": figures["precision"], "recall": figures["recall"],
            "f1": figures["f1"], "fpr": figures["fpr"], "macro_f1": ev.to_dict()["macro_f1"],
            "per_category_figures": MetadataValue.json(ev.to_dict()["per_category"]),
            "confusion": MetadataValue.md(ev.confusion_markdown()),
        })
        if report.keyword_baseline is not None:
            metadata["keyword_baseline_f1"] = report.keyword_baseline.flagged.figures()["f1"]
    return metadata
