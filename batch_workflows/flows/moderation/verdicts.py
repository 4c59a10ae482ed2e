"""A day's results → ``verdicts.parquet`` (exactly one row per item) and ``flagged.parquet``
(the flagged items with their text), streamed, with the day's figures (`VerdictReport`).

The item table and the results are matched on ``custom_id`` a part at a time: when the two
files together pass `PART_BYTES` (8 MB of Parquet), their rows are first spread over a ``HashSpill`` by the hash
of the custom_id (as the results join does), so only one part of each is in memory whatever the
size of the day. Inside a part, verdicts follow the items' order.

Every item gets one verdict: ``ok`` (a verdict the strategy could read), ``unparsed`` (an answer
that does not read as a verdict, with the reason) or ``failed`` (no answer: the request failed,
expired or is missing, with the provider's error). ok + unparsed + failed = items.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_workflows.flows.moderation.items import ITEM_PREFIX, ITEM_SCHEMA
from batch_workflows.flows.moderation.judges import FAILED, OK, UNPARSED, Judge, Judged
from batch_workflows.flows.moderation.keyword import KeywordMatcher
from batch_workflows.flows.moderation.metrics import Evaluation
from batch_workflows.parquet import open_parquet
from batch_workflows.spill import HashSpill, partitions_for, release_memory

PART_BYTES = 8 * 1024 * 1024  # item + result bytes (on disk) per part: ~10x in memory
BATCH_ROWS = 8192
SAMPLE = 20
RESULT_COLUMNS = ["custom_id", "status", "error_code", "error_message", "model", "content",
                  "finish_reason", "embedding"]
SCORES = pa.map_(pa.string(), pa.float32())

VERDICT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("flagged", pa.bool_()),  # null unless status is ok
    ("categories", pa.list_(pa.string())),  # null unless status is ok
    ("scores", SCORES),  # embedding strategy: every category's score; null for llm
    ("rationale", pa.string()),  # llm strategy: the judge's short reason
    ("strategy", pa.string()),
    ("model", pa.string()),
    ("status", pa.string()),  # ok, unparsed, failed
    ("reason", pa.string()),  # why unparsed or failed
    ("labels", pa.list_(pa.string())),  # the item's labels (null: unlabelled)
    ("created_at", pa.string()),
    ("custom_id", pa.string()),
])
FLAGGED_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("categories", pa.list_(pa.string())),
    ("scores", SCORES),
    ("rationale", pa.string()),
    ("created_at", pa.string()),
    ("strategy", pa.string()),
    ("model", pa.string()),
])


@dataclass
class VerdictReport:
    """A day's figures: counts, per-category counts, accuracy against labels where present."""

    strategy: str
    model: str
    policy: str
    policy_version: str
    items: int = 0
    statuses: Counter = field(default_factory=Counter)
    flagged: int = 0
    per_category: Counter = field(default_factory=Counter)
    evaluation: Evaluation | None = None
    keyword_baseline: Evaluation | None = None  # the keyword baseline on the same labelled items
    unparsed_sample: list[dict[str, str]] = field(default_factory=list)
    failed_sample: list[dict[str, str]] = field(default_factory=list)
    orphan_results: int = 0  # result rows naming no item (never expected)

    @property
    def accounted(self) -> bool:
        return sum(self.statuses[s] for s in (OK, UNPARSED, FAILED)) == self.items

    @property
    def flagged_rate(self) -> float:
        return self.flagged / self.statuses[OK] if self.statuses[OK] else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "model": self.model, "policy": self.policy,
            "policy_version": self.policy_version, "items": self.items,
            "ok": self.statuses[OK], "unparsed": self.statuses[UNPARSED],
            "failed": self.statuses[FAILED], "flagged": self.flagged,
            "flagged_rate": round(self.flagged_rate, 4),
            "per_category": dict(self.per_category), "accounted": self.accounted,
            "orphan_results": self.orphan_results,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
            "keyword_baseline": self.keyword_baseline.to_dict() if self.keyword_baseline else None,
            "unparsed_sample": self.unparsed_sample, "failed_sample": self.failed_sample,
        }


def write_verdicts(items_path: str | Path, results_path: str | Path, judge: Judge,
                   verdicts_path: str | Path, flagged_path: str | Path, *,
                   part_bytes: int = PART_BYTES,
                   work_dir: str | Path | None = None) -> VerdictReport:
    """Judge every item of the item table from the results; write both tables; the figures."""
    policy = judge.policy
    report = VerdictReport(judge.strategy, judge.model, policy.name, policy.version,
                           evaluation=Evaluation(policy.names),
                           keyword_baseline=Evaluation(policy.names))
    keywords = KeywordMatcher(policy)
    judge.prepare(results_path)
    size = os.path.getsize(items_path) + os.path.getsize(results_path)
    with (pq.ParquetWriter(str(verdicts_path), VERDICT_SCHEMA) as verdicts,
          pq.ParquetWriter(str(flagged_path), FLAGGED_SCHEMA) as flagged):
        for items, results in _parts(items_path, results_path, partitions_for(size, part_bytes),
                                     work_dir):
            index = pc.index_in(items.column("custom_id"), value_set=results.column("custom_id"))
            report.orphan_results += results.num_rows - (len(index) - index.null_count)
            for start in range(0, items.num_rows, BATCH_ROWS):
                block = items.slice(start, BATCH_ROWS)
                rows = _match(index.slice(start, BATCH_ROWS), results)
                judged = judge.parse(rows)
                _record(report, keywords, block, judged)
                table = _verdict_table(block, rows, judged, judge)
                verdicts.write_table(table)
                flagged.write_table(_flagged_table(table, block, judged))
            del items, results, index
            release_memory()  # hand the part's buffers back before the next part is read
    if report.evaluation is not None and not report.evaluation.labelled:
        report.evaluation = report.keyword_baseline = None  # nothing labelled: no figures
    return report


# --- the join, a part at a time -----------------------------------------------------------------

def _item_rows(path: str | Path) -> Iterator[pa.RecordBatch]:
    yield from open_parquet(path).iter_batches(batch_size=65_536)


def _result_rows(path: str | Path) -> Iterator[pa.RecordBatch]:
    """The results of items (not anchors or other extra requests), the columns a judge reads."""
    for batch in open_parquet(path).iter_batches(batch_size=65_536, columns=RESULT_COLUMNS):
        batch = batch.filter(pc.starts_with(batch.column("custom_id"), ITEM_PREFIX))
        if batch.num_rows:
            yield batch


def _parts(items_path: str | Path, results_path: str | Path, n: int,
           work_dir: str | Path | None) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(items, results) of each part; one part: both files as they are."""
    if n == 1:
        results = pa.Table.from_batches(list(_result_rows(results_path)),
                                        schema=_result_schema(results_path))
        yield pq.read_table(str(items_path)).cast(ITEM_SCHEMA), results
        return
    with HashSpill.temporary(n, work_dir, ".verdicts-") as spill:
        for batch in _item_rows(items_path):
            spill.add("req", [batch])
        for batch in _result_rows(results_path):
            spill.add("res", [batch])
        spill.close()
        schema = _result_schema(results_path)
        for i in range(n):
            yield spill.read("req", i, ITEM_SCHEMA), spill.read("res", i, schema)


def _result_schema(path: str | Path) -> pa.Schema:
    schema = open_parquet(path).schema_arrow
    return pa.schema([schema.field(c) for c in RESULT_COLUMNS])


def _match(index: pa.Array, results: pa.Table) -> pa.Table:
    """The result row of each item (`index`: its row in `results`, null when it has none; then
    all-null with status ``missing``)."""
    rows = results.take(index)
    if index.null_count:
        status = pc.fill_null(rows.column("status"), "missing")
        rows = rows.set_column(rows.schema.get_field_index("status"), "status", status)
    return rows


# --- the figures and the tables -------------------------------------------------------------

def _record(report: VerdictReport, keywords: KeywordMatcher, items: pa.Table,
            judged: Judged) -> None:
    ids = items.column("id").to_pylist()
    labels = items.column("labels").to_pylist()
    texts = (items.column("text").to_pylist() if any(lab is not None for lab in labels)
             else None)
    for i, status in enumerate(judged.status):
        report.items += 1
        report.statuses[status] += 1
        categories = judged.categories[i]
        if status == OK:
            report.flagged += bool(judged.flagged[i])
            report.per_category.update(categories or ())
        elif len(sample := report.unparsed_sample if status == UNPARSED
                 else report.failed_sample) < SAMPLE:
            sample.append({"id": ids[i], "reason": judged.reason[i] or ""})
        if labels[i] is not None and report.evaluation is not None:
            report.evaluation.add(categories if status == OK else None, labels[i])
            report.keyword_baseline.add(keywords.categories(texts[i]), labels[i])


def _scores(judged: Judged, names: list[str]) -> pa.Array:
    n = len(judged.status)
    if judged.scores is None:
        return pa.nulls(n, SCORES)
    k = len(names)
    ok = ~np.isnan(judged.scores).any(axis=1)
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.where(ok, k, 0))]).astype(np.int32),
                       mask=np.concatenate([~ok, [False]]))
    keys = pa.array(np.tile(np.array(names, dtype=object), int(ok.sum())), pa.string())
    values = pa.array(judged.scores[ok].ravel(), pa.float32())
    return pa.MapArray.from_arrays(offsets, keys, values)


def _verdict_table(items: pa.Table, rows: pa.Table, judged: Judged, judge: Judge) -> pa.Table:
    n = items.num_rows
    # the model that answered (a provider may name a dated version), else the one asked
    model = pc.fill_null(rows.column("model"), judge.model) if n else pa.array([], pa.string())
    return pa.table({
        "id": items.column("id"),
        "flagged": pa.array(judged.flagged, pa.bool_()),
        "categories": pa.array(judged.categories, pa.list_(pa.string())),
        "scores": _scores(judged, judge.policy.names),
        "rationale": pa.array(judged.rationale, pa.string()),
        "strategy": pa.array([judge.strategy] * n, pa.string()),
        "model": model,
        "status": pa.array(judged.status, pa.string()),
        "reason": pa.array(judged.reason, pa.string()),
        "labels": items.column("labels"),
        "created_at": items.column("created_at"),
        "custom_id": items.column("custom_id"),
    }, schema=VERDICT_SCHEMA)


def _flagged_table(verdicts: pa.Table, items: pa.Table, judged: Judged) -> pa.Table:
    keep = pa.array([bool(f) for f in judged.flagged])
    table = verdicts.append_column("text", items.column("text"))
    return table.filter(keep).select(FLAGGED_SCHEMA.names).cast(FLAGGED_SCHEMA)
