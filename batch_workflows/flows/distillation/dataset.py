"""Joined results + prompt table → the fine-tuning dataset, streamed (the flow's output step).

::

    prompt table ─┐                     ┌─▶ train.jsonl, validation.jsonl   one line per kept answer
                  ├─ join on custom_id ─┤─▶ metadata.parquet               line → custom_id, prompt, source, teacher, tokens
    results ──────┘   (parts by hash)   └─▶ dropped.parquet                custom_id → reason
                                           + the figures of `DatasetReport` (card.py writes them out)

Both inputs are read in row groups. A partition whose inputs pass `PART_BYTES` is split by the
hash of the custom_id into parts (spilled to disk, `spill.HashSpill`) and joined one part at a
time; rows are decided in order of part, then custom_id (`filters.AnswerFilter`), and written
at once: memory stays flat, but for the duplicate filters' 8 bytes per answer (+ 8 per LSH
band of a long answer) and the token histograms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.distillation.examples import EXAMPLE_FORMATS
from batch_workflows.flows.distillation.filters import (
    CODE,
    KEPT,
    OUTCOMES,
    AnswerFilter,
    FilterSettings,
)
from batch_workflows.flows.distillation.requests import PROMPT_SCHEMA
from batch_workflows.flows.distillation.split import SPLITS, TRAIN, VALIDATION, split_of
from batch_workflows.flows.distillation.tokens import TokenHistogram
from batch_workflows.flows.side_table import SideTableWriter, tally_results, tally_side_table
from batch_workflows.parquet import open_parquet
from batch_workflows.spill import HashSpill, partitions_for, release_memory

PART_BYTES = 16 * 1024 * 1024  # uncompressed input bytes joined at a time
BATCH_ROWS = 4096  # rows decided and written at a time
RESULT_COLUMNS = ["custom_id", "status", "model", "content", "finish_reason", "prompt_tokens",
                  "completion_tokens"]
SOURCES_LISTED = 20  # the card names this many sources by name, the rest as "others"

METADATA_SCHEMA = pa.schema([
    ("custom_id", pa.string()),
    ("split", pa.string()),
    ("line", pa.int64()),  # 1-based line in the split's file
    ("prompt_id", pa.string()),
    ("sample", pa.int32()),
    ("source", pa.string()),
    ("source_line", pa.int64()),
    ("task", pa.string()),
    ("teacher_model", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("finish_reason", pa.string()),
])
DROPPED_SCHEMA = pa.schema([
    ("custom_id", pa.string()),
    ("prompt_id", pa.string()),
    ("reason", pa.string()),
    ("status", pa.string()),
    ("finish_reason", pa.string()),
])
FILES = {"train": "train.jsonl", "validation": "validation.jsonl",
         "metadata": "metadata.parquet", "dropped": "dropped.parquet"}


@dataclass
class DatasetReport:
    """The figures of one dataset: every request has exactly one outcome."""

    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    splits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    tasks: Counter = field(default_factory=Counter)  # kept examples per task
    sources: Counter = field(default_factory=Counter)  # kept examples per source
    teachers: Counter = field(default_factory=Counter)  # kept examples per answering model
    prompt_tokens: TokenHistogram = field(default_factory=TokenHistogram)
    completion_tokens: TokenHistogram = field(default_factory=TokenHistogram)
    total_tokens: TokenHistogram = field(default_factory=TokenHistogram)

    @property
    def kept(self) -> int:
        return self.outcomes[KEPT]

    @property
    def dropped(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != KEPT}

    @property
    def adds_up(self) -> bool:
        """kept + dropped by reason = requests, and kept = train + validation."""
        return (sum(self.outcomes.values()) == self.requests
                and sum(self.splits.values()) == self.kept)

    def to_dict(self) -> dict[str, Any]:
        top = self.sources.most_common(SOURCES_LISTED)
        others = sum(self.sources.values()) - sum(n for _, n in top)
        return {
            "requests": self.requests, "kept": self.kept, "dropped": self.dropped,
            "dropped_total": self.requests - self.kept, "splits": dict(self.splits),
            "tasks": dict(sorted(self.tasks.items())),
            "sources": {**dict(top), **({"others": others} if others else {})},
            "distinct_sources": len(self.sources), "teachers": dict(self.teachers),
            "tokens": {"prompt": self.prompt_tokens.describe(),
                       "completion": self.completion_tokens.describe(),
                       "total": self.total_tokens.describe()},
            "adds_up": self.adds_up,
        }


def _size(path: str | Path) -> int:
    meta = open_parquet(path).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def joined_parts(prompt_table: str | Path, results: str | Path,
                 part_bytes: int = PART_BYTES) -> Iterator[pa.Table]:
    """The prompt table joined with the results on custom_id, a part at a time, each sorted by
    custom_id. Fails when the two do not name the same requests."""
    planned, got = tally_side_table(prompt_table), tally_results(results)
    if not planned.same_requests(got) or planned.rows != planned.requests:
        raise ConfigurationError(
            f"the prompt table and the results name different requests ({planned.requests} "
            f"planned, {got.requests} with a result); re-materialize distillation_requests "
            "through distillation_results")
    parts = partitions_for(_size(prompt_table) + _size(results), part_bytes)
    if parts <= 1:
        yield _join(open_parquet(prompt_table).read(), open_parquet(results).read(RESULT_COLUMNS))
        return
    with HashSpill.temporary(parts, Path(results).resolve().parent, ".dataset-") as spill:
        for batch in open_parquet(prompt_table).iter_batches(batch_size=65_536):
            spill.add("req", [batch])
        for batch in open_parquet(results).iter_batches(batch_size=16_384,
                                                         columns=RESULT_COLUMNS):
            spill.add("res", [batch])
        spill.close()
        result_schema = open_parquet(results).schema_arrow
        result_schema = pa.schema([result_schema.field(c) for c in RESULT_COLUMNS])
        for i in range(parts):
            yield _join(spill.read("req", i, PROMPT_SCHEMA), spill.read("res", i, result_schema))
            release_memory()


def _join(prompts: pa.Table, results: pa.Table) -> pa.Table:
    joined = prompts.join(results, "custom_id", join_type="inner", use_threads=False)
    return joined.sort_by("custom_id")


class DatasetWriter:
    """Writes the examples, the metadata and the dropped table, and counts every outcome."""

    def __init__(self, folder: str | Path, settings: Any):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths = {k: self.folder / v for k, v in FILES.items()}
        self.example = EXAMPLE_FORMATS[settings.format]
        self.fraction = settings.validation_fraction
        self.filter = AnswerFilter(FilterSettings(settings.max_answer_tokens,
                                                  settings.near_dup_threshold,
                                                  settings.near_dup_min_words))
        self.report = DatasetReport()
        self.out = {s: open(self.paths[s], "wb", buffering=1 << 20) for s in SPLITS}  # noqa: SIM115
        self.metadata = SideTableWriter(self.paths["metadata"], METADATA_SCHEMA)
        self.dropped = SideTableWriter(self.paths["dropped"], DROPPED_SCHEMA)

    def add(self, rows: pa.Table) -> None:
        """Decide and write one batch of joined rows (in the order they are to be decided)."""
        codes = self.filter.outcomes(rows)
        self.report.requests += rows.num_rows
        for code, n in zip(*np.unique(codes, return_counts=True), strict=True):
            self.report.outcomes[OUTCOMES[code]] += int(n)
        self._drop(rows, codes)
        self._keep(rows.filter(pa.array(codes == CODE[KEPT])))

    def _drop(self, rows: pa.Table, codes: np.ndarray) -> None:
        gone = np.flatnonzero(codes != CODE[KEPT])
        if not len(gone):
            return
        taken = rows.take(gone)
        self.dropped.extend({
            "custom_id": taken.column("custom_id").to_pylist(),
            "prompt_id": taken.column("prompt_id").to_pylist(),
            "reason": [OUTCOMES[c] for c in codes[gone]],
            "status": taken.column("status").to_pylist(),
            "finish_reason": taken.column("finish_reason").to_pylist(),
        })

    def _keep(self, kept: pa.Table) -> None:
        if not kept.num_rows:
            return
        r = self.report
        col = {name: kept.column(name).to_pylist() for name in
               ("prompt_id", "system", "user", "content", "task", "source", "model")}
        splits = [split_of(pid, self.fraction) for pid in col["prompt_id"]]
        lines: dict[str, list[bytes]] = {TRAIN: [], VALIDATION: []}
        numbers = []
        for split, system, user, answer in zip(splits, col["system"], col["user"],
                                               col["content"], strict=True):
            lines[split].append(orjson.dumps(self.example(system, user, answer)))
            numbers.append(r.splits[split] + len(lines[split]))
        for split, chunk in lines.items():
            if chunk:
                self.out[split].write(b"\n".join(chunk) + b"\n")
                r.splits[split] += len(chunk)
        prompt_tokens = kept.column("prompt_tokens").fill_null(0).to_numpy()
        completion_tokens = kept.column("completion_tokens").fill_null(0).to_numpy()
        r.prompt_tokens.add(prompt_tokens)
        r.completion_tokens.add(completion_tokens)
        r.total_tokens.add(prompt_tokens + completion_tokens)
        r.tasks.update(col["task"])
        r.sources.update(col["source"])
        r.teachers.update(col["model"])
        self.metadata.extend({
            "custom_id": kept.column("custom_id").to_pylist(), "split": splits,
            "line": numbers, "prompt_id": col["prompt_id"],
            "sample": kept.column("sample").to_pylist(), "source": col["source"],
            "source_line": kept.column("line").to_pylist(), "task": col["task"],
            "teacher_model": col["model"], "prompt_tokens": prompt_tokens.tolist(),
            "completion_tokens": completion_tokens.tolist(),
            "finish_reason": kept.column("finish_reason").to_pylist(),
        })

    def close(self) -> None:
        for fh in self.out.values():
            fh.close()
        self.metadata.close()
        self.dropped.close()


def build_dataset(prompt_table: str | Path, results: str | Path, folder: str | Path,
                  settings: Any, part_bytes: int = PART_BYTES) -> DatasetReport:
    """Write train.jsonl, validation.jsonl, metadata.parquet and dropped.parquet into `folder`;
    returns the figures (`settings`: a DistillationSettings)."""
    writer = DatasetWriter(folder, settings)
    try:
        for part in joined_parts(prompt_table, results, part_bytes):
            for batch in part.to_batches(max_chunksize=BATCH_ROWS):
                writer.add(pa.Table.from_batches([batch]))
            del part
    finally:
        writer.close()
    return writer.report
