"""``distillation_dataset``: the partition's results → a fine-tuning dataset, and its checks.

Files, under ``distillation/<partition>/dataset/`` in the artifact store: ``train.jsonl``,
``validation.jsonl``, ``metadata.parquet``, ``dropped.parquet``, ``card.json``, ``README.md``.
Changing a filter, split or format setting needs only this asset re-materialized: nothing is
submitted again.

Checks: ``lines_valid_for_fine_tuning`` (every line passes `sft_rules`), ``no_prompt_in_both_splits``,
``enough_training_examples`` (OpenAI's minimum of 10; a warning), ``counts_add_up`` (kept +
dropped by reason = requests submitted, each figure recounted from the stored files).
"""

# No `from __future__ import annotations`: Dagster reads the context annotations of asset and
# check functions at definition time and refuses them as strings.
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.distillation.partitions import (
    GROUP_DESCRIPTION,
    NAME,
    OWNERS,
    distillation_partitions,
    settings,
)
from assets.distillation.requests import lifecycle, prompt_stats_key, prompt_table_key
from batch_workflows.dagster import GROUP_DESCRIPTION_KEY, ArtifactStore, fetch_results
from batch_workflows.flows.distillation.card import card_data, readme
from batch_workflows.flows.distillation.dataset import FILES, build_dataset
from batch_workflows.flows.distillation.filters import DROP_REASONS
from batch_workflows.flows.distillation.sft_rules import MIN_EXAMPLES, check_file
from batch_workflows.flows.distillation.split import SPLITS
from batch_workflows.lifecycle import PartitionLayout, read_summary
from batch_workflows.parquet import open_parquet

CHECK_VALID = "lines_valid_for_fine_tuning"
CHECK_SPLITS = "no_prompt_in_both_splits"
CHECK_MINIMUM = "enough_training_examples"
CHECK_COUNTS = "counts_add_up"
FILE_TEXT = {
    "train.jsonl": "training examples, one per line",
    "validation.jsonl": "validation examples, one per line",
    "metadata.parquet": "per line: split, line, custom_id, prompt_id, sample, source, "
                        "source_line, task, teacher_model, tokens, finish_reason",
    "dropped.parquet": "per dropped request: custom_id, prompt_id, reason, status, finish_reason",
    "card.json": "every count of this card",
    "README.md": "this card",
}


def dataset_key(partition_key: str, filename: str) -> str:
    return PartitionLayout(NAME, partition_key).file(f"dataset/{filename}")


@asset(
    name="distillation_dataset",
    partitions_def=distillation_partitions,
    deps=[lifecycle.results],
    group_name=NAME,
    owners=OWNERS,
    metadata={GROUP_DESCRIPTION_KEY: GROUP_DESCRIPTION},
    kinds={"jsonl"},
    automation_condition=AutomationCondition.eager(),
    description="Supervised fine-tuning dataset (train/validation JSONL, metadata, card) "
                "from the partition's teacher answers, every drop counted by reason.",
)
def distillation_dataset(context: AssetExecutionContext,
                         artifacts: ArtifactStore) -> MaterializeResult:
    s = settings()
    pkey = context.partition_key
    with tempfile.TemporaryDirectory(prefix="bw-dataset-") as tmp:
        results = fetch_results(artifacts, NAME, pkey, Path(tmp) / "results.parquet")
        table = artifacts.get_file(prompt_table_key(pkey), Path(tmp) / "prompts.parquet")
        out = Path(tmp) / "dataset"
        report = build_dataset(table, results, out, s)
        card = card_data(report.to_dict(), partition=pkey, settings=s,
                         summary=read_summary(artifacts, NAME, pkey),
                         prompts=json.loads(artifacts.read_bytes(prompt_stats_key(pkey))),
                         files=FILE_TEXT)
        text = readme(card)
        (out / "card.json").write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
        (out / "README.md").write_text(text, encoding="utf-8")
        for name in FILE_TEXT:
            artifacts.put_file(out / name, dataset_key(pkey, name))
    context.log.info(f"{pkey}: {card['kept']} examples kept of {card['requests_submitted']} "
                     f"requests; dropped {card['dropped']}")
    return MaterializeResult(metadata=_metadata(card, text, artifacts, pkey))


def _metadata(card: dict[str, Any], text: str, artifacts: ArtifactStore,
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
        "train_path": MetadataValue.path(artifacts.uri(dataset_key(pkey, FILES["train"]))),
        "validation_path": MetadataValue.path(
            artifacts.uri(dataset_key(pkey, FILES["validation"]))),
        "card": MetadataValue.md(text),
    }
    if card["cost_usd_batch_rate"] is not None:
        metadata["cost_usd_batch_rate"] = float(card["cost_usd_batch_rate"])
    return metadata


# --- checks ---------------------------------------------------------------------------------


def _fetch(artifacts: ArtifactStore, pkey: str, filename: str, tmp: str) -> Path:
    return artifacts.get_file(dataset_key(pkey, filename), Path(tmp) / filename)


@asset_check(asset=distillation_dataset, name=CHECK_VALID, partitions_def=distillation_partitions,
             description="Every line of train.jsonl and validation.jsonl is valid for "
                         "fine-tuning (OpenAI's rules and the stricter providers' turn order).")
def lines_valid_for_fine_tuning(context: AssetCheckExecutionContext,
                                artifacts: ArtifactStore) -> AssetCheckResult:
    found, examples, sample = 0, {}, []
    with tempfile.TemporaryDirectory(prefix="bw-sft-") as tmp:
        for split in SPLITS:
            report = check_file(str(_fetch(artifacts, context.partition_key, FILES[split], tmp)),
                                max_problems=10)
            found += report.found
            examples[split] = report.examples
            sample += [str(p).replace(tmp + "/", "") for p in report.problems]
    return AssetCheckResult(passed=not found, metadata={
        "problems": found, "examples": MetadataValue.json(examples),
        "problems_sample": MetadataValue.json(sample[:10])})


@asset_check(asset=distillation_dataset, name=CHECK_SPLITS,
             partitions_def=distillation_partitions,
             description="No prompt has examples in both train and validation.")
def no_prompt_in_both_splits(context: AssetCheckExecutionContext,
                             artifacts: ArtifactStore) -> AssetCheckResult:
    with tempfile.TemporaryDirectory(prefix="bw-split-") as tmp:
        path = _fetch(artifacts, context.partition_key, FILES["metadata"], tmp)
        table = open_parquet(path).read(["prompt_id", "split"])
    per_prompt = table.group_by("prompt_id").aggregate([("split", "count_distinct")])
    both = per_prompt.filter(pc.greater(per_prompt.column("split_count_distinct"), 1))
    return AssetCheckResult(passed=both.num_rows == 0, metadata={
        "prompts": per_prompt.num_rows, "in_both": both.num_rows,
        "in_both_sample": MetadataValue.json(both.column("prompt_id").to_pylist()[:10])})


@asset_check(asset=distillation_dataset, name=CHECK_MINIMUM,
             partitions_def=distillation_partitions,
             description=f"At least {MIN_EXAMPLES} training examples (OpenAI's minimum); a "
                         "warning on a small partition, not a failure.")
def enough_training_examples(context: AssetCheckExecutionContext,
                             artifacts: ArtifactStore) -> AssetCheckResult:
    with tempfile.TemporaryDirectory(prefix="bw-min-") as tmp:
        meta = open_parquet(_fetch(artifacts, context.partition_key, FILES["metadata"], tmp))
        splits = meta.read(["split"]).column("split")
    train = pc.sum(pc.equal(splits, "train")).as_py() or 0
    return AssetCheckResult(passed=train >= MIN_EXAMPLES, severity=AssetCheckSeverity.WARN,
                            metadata={"train": train, "minimum": MIN_EXAMPLES})


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


@asset_check(asset=distillation_dataset, name=CHECK_COUNTS,
             partitions_def=distillation_partitions,
             description="kept + dropped by reason = requests submitted, recounted from the "
                         "stored files: lines, metadata and dropped rows, the results' statuses.")
def counts_add_up(context: AssetCheckExecutionContext,
                  artifacts: ArtifactStore) -> AssetCheckResult:
    pkey = context.partition_key
    summary = read_summary(artifacts, NAME, pkey)
    with tempfile.TemporaryDirectory(prefix="bw-counts-") as tmp:
        lines = {s: _lines(_fetch(artifacts, pkey, FILES[s], tmp)) for s in SPLITS}
        metadata_rows = open_parquet(_fetch(artifacts, pkey, FILES["metadata"], tmp)
                                     ).metadata.num_rows
        reasons = open_parquet(_fetch(artifacts, pkey, FILES["dropped"], tmp)).read(["reason"])
        card = json.loads(_fetch(artifacts, pkey, "card.json", tmp).read_bytes())
    counted = reasons.group_by("reason").aggregate([("reason", "count")]).to_pylist()
    dropped = {row["reason"]: row["reason_count"] for row in counted}
    kept = sum(lines.values())
    unfinished = {s: summary.counts.get(s, 0) for s in ("failed", "errored", "missing")}
    passed = (kept + sum(dropped.values()) == summary.submitted == summary.rows
              and kept == metadata_rows == card["kept"]
              and all(dropped.get(s, 0) == n for s, n in unfinished.items())
              and all(card["dropped"][r] == dropped.get(r, 0) for r in DROP_REASONS))
    return AssetCheckResult(passed=passed, metadata={
        "requests_submitted": summary.submitted, "result_rows": summary.rows, "kept": kept,
        "metadata_rows": metadata_rows, "dropped": MetadataValue.json(dropped),
        "lifecycle_unfinished": MetadataValue.json(unfinished)})


checks = [lines_valid_for_fine_tuning, no_prompt_in_both_splits, enough_training_examples,
          counts_add_up]
