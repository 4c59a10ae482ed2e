"""`ResultSet`: the summary of a join (counts, errors, usage per model) and access to its rows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_workflows.parquet import open_parquet
from batch_workflows.results.schema import (
    ERRORED,
    FAILED,
    SCHEMA,
    STATUSES,
    SUCCEEDED,
    TOKEN_COLUMNS,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ResultSet:
    """Summary of a join, plus access to its rows (the Parquet file, or in memory when small)."""

    path: str | None
    counts: dict[str, int]
    error_breakdown: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    unexpected: int
    models: dict[str, dict[str, int]]
    duplicates: int = 0
    unexpected_sample: list[str] = field(default_factory=list)
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        """Number of submitted requests (one row each)."""
        return sum(self.counts.values())

    @property
    def all_succeeded(self) -> bool:
        return self.counts.get(SUCCEEDED, 0) == self.total

    def to_arrow(self) -> pa.Table:
        """All rows as an Arrow table (reads the Parquet file when the rows are on disk)."""
        if self.table is not None:
            return self.table
        if self.path is None:
            return SCHEMA.empty_table()
        return pq.read_table(self.path)

    def to_dataframe(self) -> pd.DataFrame:
        """All rows as a pandas DataFrame: meant for small results."""
        return self.to_arrow().to_pandas()

    def iter_unfinished_ids(self) -> Iterator[str]:
        """custom_ids whose status is not `succeeded` (to resubmit), streamed from the rows."""
        for batch in self._iter_batches(["custom_id", "status"]):
            keep = pc.not_equal(batch.column("status"), SUCCEEDED)
            yield from batch.column("custom_id").filter(keep).to_pylist()

    def _iter_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.select(columns).to_batches()
        elif self.path is not None:
            yield from open_parquet(self.path).iter_batches(columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """Plain summary (JSON-friendly), e.g. for asset metadata."""
        return {
            "path": self.path,
            "total": self.total,
            "counts": dict(self.counts),
            "error_breakdown": dict(self.error_breakdown),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "unexpected": self.unexpected,
            "unexpected_sample": list(self.unexpected_sample),
            "duplicates": self.duplicates,
            "models": {m: dict(u) for m, u in self.models.items()},
        }

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> ResultSet:
        """Rebuild the summary of a results file written by `join_results` (streamed)."""
        counter = ResultCounter()
        pf = open_parquet(path)
        columns = ["status", "status_code", "error_code", "model"] + list(TOKEN_COLUMNS)
        for batch in pf.iter_batches(columns=columns):
            counter.add(pa.Table.from_batches([batch]))
        return counter.result_set(str(path), unexpected=0, duplicates=0, sample=[])


class ResultCounter:
    """Counts, error breakdown and usage per model, accumulated over joined tables."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.errors: dict[str, int] = {}
        self.models: dict[str, dict[str, int]] = {}

    def add(self, table: pa.Table) -> None:
        keys = ["status", "status_code", "error_code"]
        for row in table.group_by(keys).aggregate([("status", "count")]).to_pylist():
            status, n = row["status"], row["status_count"]
            self.counts[status] = self.counts.get(status, 0) + n
            if status in (FAILED, ERRORED):
                key = row["error_code"] or (
                    f"http_{row['status_code']}" if status == FAILED else "unknown"
                )
                self.errors[key] = self.errors.get(key, 0) + n
        used = table.filter(pc.is_valid(table.column("total_tokens")))
        if used.num_rows:
            aggs = [("total_tokens", "count")] + [(t, "sum") for t in TOKEN_COLUMNS]
            for row in used.group_by("model").aggregate(aggs).to_pylist():
                name = row["model"] or "unknown"
                usage = self.models.setdefault(name, dict.fromkeys(("requests", *TOKEN_COLUMNS), 0))
                usage["requests"] += row["total_tokens_count"]
                for t in TOKEN_COLUMNS:
                    usage[t] += row[f"{t}_sum"] or 0

    def result_set(
        self, path: str | None, unexpected: int, duplicates: int, sample: list[str]
    ) -> ResultSet:
        """The summary so far, for the rows at `path` (None: the caller attaches a table)."""
        totals = {t: sum(u[t] for u in self.models.values()) for t in TOKEN_COLUMNS}
        errors = dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0])))
        return ResultSet(
            path=path,
            counts=self.counts,
            error_breakdown=errors,
            prompt_tokens=totals["prompt_tokens"],
            completion_tokens=totals["completion_tokens"],
            total_tokens=totals["total_tokens"],
            unexpected=unexpected,
            models=dict(sorted(self.models.items())),
            duplicates=duplicates,
            unexpected_sample=sample,
        )
