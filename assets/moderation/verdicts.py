"""``moderation_verdicts``: a day's results → ``verdicts.parquet`` and ``flagged.parquet`` in the
artifact store, with the day's figures as metadata; and its check ``moderation_accuracy``.

Metadata: items, flagged rate, counts per category, unparsed and failed counts, cost at the
batch price; when the backlog has labels, precision, recall, F1 and false-positive rate (flagged
vs safe, and per category), the confusion table and the keyword baseline's F1 on the same items.
The check passes when the F1 (flagged vs safe) on the labelled items reaches
``MODERATION_MIN_F1``; a day without labels has nothing to measure and passes, saying so.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotations of asset
# and check functions at definition time and refuses them as strings.
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
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    asset,
    asset_check,
)

from assets.moderation.partitions import (
    GROUP_DESCRIPTION,
    NAME,
    OWNERS,
    moderation_partitions,
    settings,
)
from assets.moderation.requests import items_key, lifecycle
from batch_workflows import lifecycle as lc
from batch_workflows.dagster import (
    GROUP_DESCRIPTION_KEY,
    ArtifactStore,
    accept_backfill_policy,
    combined_metadata,
    fetch_results,
)
from batch_workflows.flows.moderation.metrics import Confusion
from batch_workflows.flows.moderation.verdicts import VerdictReport, write_verdicts

CHECK_ACCURACY = "moderation_accuracy"
VERDICTS, FLAGGED, REPORT = "verdicts.parquet", "flagged.parquet", "verdicts.json"


def verdicts_key(day: str, file: str = VERDICTS) -> str:
    """Artifact key of a day's verdict file (``moderation/<day>/verdicts.parquet``, ...)."""
    return lc.PartitionLayout(NAME, day).file(file)


accept_backfill_policy()


@asset(
    name="moderation_verdicts",
    partitions_def=moderation_partitions,
    deps=[lifecycle.results],
    group_name=NAME,
    owners=OWNERS,
    metadata={GROUP_DESCRIPTION_KEY: GROUP_DESCRIPTION},
    kinds={"parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    # eager() alone takes only the latest day: a backfill of older days would stop at results.
    automation_condition=AutomationCondition.eager().without(
        AutomationCondition.in_latest_time_window()),
    description="One verdict per item of the day (verdicts.parquet) and the flagged items with "
                "their text (flagged.parquet); accuracy against labels when the backlog has them.",
)
def moderation_verdicts(context: AssetExecutionContext, artifacts: ArtifactStore) -> MaterializeResult:
    per_day = [(day, _verdicts_of_day(context, artifacts, day)) for day in context.partition_keys]
    return MaterializeResult(metadata=combined_metadata(per_day))


def _verdicts_of_day(context: AssetExecutionContext, artifacts: ArtifactStore,
                     day: str) -> dict[str, Any]:
    s = settings()
    pointer = lc.read_pointer(artifacts, lifecycle.name, day)
    strategy = pointer.params.get("strategy", s.strategy)
    s = type(s)(**{**s.__dict__, "strategy": strategy})  # the strategy the day was submitted with
    policy = s.policy()
    judge = s.judge(policy, calibrated=True)
    with tempfile.TemporaryDirectory(prefix="bw-verdicts-") as tmp:
        work = Path(tmp)
        results = fetch_results(artifacts, NAME, day, work / "results.parquet")
        items = artifacts.get_file(items_key(day), work / "items.parquet")
        report = write_verdicts(items, results, judge, work / VERDICTS, work / FLAGGED,
                                work_dir=work)
        uri = artifacts.put_file(work / VERDICTS, verdicts_key(day))
        artifacts.put_file(work / FLAGGED, verdicts_key(day, FLAGGED))
    summary = lc.read_summary(artifacts, NAME, day)
    data = report.to_dict()
    data["cost_usd_batch_rate"] = None if summary.cost_usd is None else float(summary.cost_usd)
    artifacts.write_bytes(verdicts_key(day, REPORT), orjson.dumps(data, option=orjson.OPT_INDENT_2))
    context.log.info(f"{day}: {report.items} items, {data['flagged']} flagged, "
                     f"{data['unparsed']} unparsed, {data['failed']} failed ({report.strategy})")
    return verdict_metadata(report, data, uri)


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


# Partitioned asset checks are a Dagster preview feature: accepted knowingly.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*",
                        category=PreviewWarning)


@asset_check(
    asset=moderation_verdicts,
    name=CHECK_ACCURACY,
    partitions_def=moderation_partitions,
    description="F1 of flagged vs safe on the labelled items ≥ MODERATION_MIN_F1 (a day without "
                "labels passes: nothing to measure).",
)
def moderation_accuracy(context: AssetCheckExecutionContext,
                        artifacts: ArtifactStore) -> AssetCheckResult:
    floor = settings().min_f1
    total = Confusion()
    not_scored = 0
    for day in context.partition_keys:
        data = json.loads(artifacts.read_bytes(verdicts_key(day, REPORT)))
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
