"""The distillation dataset's checks (moved from the repository's assets/distillation/dataset.py),
as plain functions of the stored files: `fetch(filename, tmp)` gets one of the partition's
dataset files.

``lines_valid_for_fine_tuning`` (every line passes `sft_rules`), ``no_prompt_in_both_splits``,
``enough_training_examples`` (OpenAI's minimum of 10; a warning), ``counts_add_up`` (kept +
dropped by reason = requests submitted, each figure recounted from the stored files).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from batch_workflows.flows.distillation.dataset import FILES
from batch_workflows.flows.distillation.filters import DROP_REASONS
from batch_workflows.flows.distillation.sft_rules import MIN_EXAMPLES, check_file
from batch_workflows.flows.distillation.split import SPLITS
from batch_workflows.parquet import open_parquet

Fetch = Callable[[str, str], Path]
CHECK_VALID = "lines_valid_for_fine_tuning"
CHECK_SPLITS = "no_prompt_in_both_splits"
CHECK_MINIMUM = "enough_training_examples"
CHECK_COUNTS = "counts_add_up"
DESCRIPTIONS = {
    CHECK_VALID: "Every line of train.jsonl and validation.jsonl is valid for fine-tuning "
                 "(OpenAI's rules and the stricter providers' turn order).",
    CHECK_SPLITS: "No prompt has examples in both train and validation.",
    CHECK_MINIMUM: f"At least {MIN_EXAMPLES} training examples (OpenAI's minimum); a warning on "
                   "a small partition, not a failure.",
    CHECK_COUNTS: "kept + dropped by reason = requests submitted, recounted from the stored "
                  "files: lines, metadata and dropped rows, the results' statuses.",
}


def lines_valid(fetch: Fetch) -> AssetCheckResult:
    found, examples, sample = 0, {}, []
    with tempfile.TemporaryDirectory(prefix="bw-sft-") as tmp:
        for split in SPLITS:
            report = check_file(str(fetch(FILES[split], tmp)), max_problems=10)
            found += report.found
            examples[split] = report.examples
            sample += [str(p).replace(tmp + "/", "") for p in report.problems]
    return AssetCheckResult(passed=not found, metadata={
        "problems": found, "examples": MetadataValue.json(examples),
        "problems_sample": MetadataValue.json(sample[:10])})


def splits_disjoint(fetch: Fetch) -> AssetCheckResult:
    with tempfile.TemporaryDirectory(prefix="bw-split-") as tmp:
        table = open_parquet(fetch(FILES["metadata"], tmp)).read(["prompt_id", "split"])
    per_prompt = table.group_by("prompt_id").aggregate([("split", "count_distinct")])
    both = per_prompt.filter(pc.greater(per_prompt.column("split_count_distinct"), 1))
    return AssetCheckResult(passed=both.num_rows == 0, metadata={
        "prompts": per_prompt.num_rows, "in_both": both.num_rows,
        "in_both_sample": MetadataValue.json(both.column("prompt_id").to_pylist()[:10])})


def enough_examples(fetch: Fetch) -> AssetCheckResult:
    with tempfile.TemporaryDirectory(prefix="bw-min-") as tmp:
        splits = open_parquet(fetch(FILES["metadata"], tmp)).read(["split"]).column("split")
    train = pc.sum(pc.equal(splits, "train")).as_py() or 0
    return AssetCheckResult(passed=train >= MIN_EXAMPLES, severity=AssetCheckSeverity.WARN,
                            metadata={"train": train, "minimum": MIN_EXAMPLES})


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def counts_add_up(fetch: Fetch, summary: Any) -> AssetCheckResult:
    with tempfile.TemporaryDirectory(prefix="bw-counts-") as tmp:
        lines = {s: _lines(fetch(FILES[s], tmp)) for s in SPLITS}
        metadata_rows = open_parquet(fetch(FILES["metadata"], tmp)).metadata.num_rows
        reasons = open_parquet(fetch(FILES["dropped"], tmp)).read(["reason"])
        card = json.loads(fetch("card.json", tmp).read_bytes())
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
