"""The output table: one row per source row, with its columns, the answer and what became of it.

The row table and the results are joined on ``custom_id`` a part at a time (a grace hash join,
as the other flows do: memory does not grow with the rows). Each output row has the source
row's columns, ``source_file`` and ``source_line``, then the answer — ``answer`` (chat) and its
parsed fields (``parse: json``: the response format's properties, typed from its schema), or
``embedding`` (embeddings) — then ``status``, ``reason``, ``finish_reason`` and token counts.

``status``: ``succeeded``; ``unparsed`` (an answer that is not the JSON asked for, the reason
says how, ``cut at max_tokens`` when it was); or the request's own ``failed``, ``errored``,
``missing``, with the provider's code and message as the reason. Nothing is dropped: the counts
add up to the rows that came in, and results for ids never submitted are counted.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.table.rows import KINDS, ROW_SCHEMA
from batch_workflows.parquet import open_parquet
from batch_workflows.results.schema import SCHEMA as RESULT_SCHEMA
from batch_workflows.spill import HashSpill, partitions_for, release_memory

PART_BYTES = 256 * 1024 * 1024  # inputs above this are joined in hash parts
BLOCK_ROWS = 8192
UNPARSED = "unparsed"
STATUSES = ("succeeded", UNPARSED, "failed", "errored", "missing")
RESULT_COLUMNS = ("custom_id", "status", "error_code", "error_message", "content",
                  "finish_reason", "embedding", "prompt_tokens", "completion_tokens")
OWN_COLUMNS = ("source_file", "source_line", "status", "reason", "finish_reason",
               "prompt_tokens", "completion_tokens")
JSON_TYPES = {"string": (pa.string(), str), "integer": (pa.int64(), int),
              "number": (pa.float64(), (int, float)), "boolean": (pa.bool_(), bool)}
SAMPLE = 5


@dataclass(frozen=True)
class OutputSpec:
    """What the output holds beside the source's columns."""

    embeddings: bool = False  # an `embedding` column (vectors), not `answer`
    parse: str = "none"  # "json": the answer's fields become columns
    fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name → JSON Schema
    prefix: str = ""  # put before the output's own column names

    def __post_init__(self) -> None:
        if self.parse not in ("none", "json"):
            raise ConfigurationError(f"output.parse {self.parse!r}: expected json or none")
        if self.parse == "json" and (self.embeddings or not self.fields):
            raise ConfigurationError("output.parse: json needs a chat request with a "
                                     "json_schema response_format (its properties become "
                                     "columns)")

    def own_names(self) -> list[str]:
        answer = ["embedding"] if self.embeddings else ["answer", *self.fields]
        return [self.prefix + n for n in (*answer, *OWN_COLUMNS)]

    def check_columns(self, source_columns: Mapping[str, str]) -> None:
        """ConfigurationError when a source column has the name of one of the output's own."""
        clash = sorted(set(source_columns) & set(self.own_names()))
        if clash:
            raise ConfigurationError(
                f"source column(s) {', '.join(clash)} have the name of the output's own; set "
                "output.prefix (e.g. 'bw_') to put a prefix before the output's columns")

    def schema(self, source_columns: Mapping[str, str]) -> pa.Schema:
        p = self.prefix
        cols = [(name, KINDS[kind]) for name, kind in source_columns.items()]
        cols += [(p + "source_file", pa.string()), (p + "source_line", pa.int64())]
        if self.embeddings:
            cols.append((p + "embedding", pa.list_(pa.float32())))
        else:
            cols.append((p + "answer", pa.string()))
            cols += [(p + n, _field_type(s)[0]) for n, s in self.fields.items()]
        cols += [(p + "status", pa.string()), (p + "reason", pa.string()),
                 (p + "finish_reason", pa.string()), (p + "prompt_tokens", pa.int64()),
                 (p + "completion_tokens", pa.int64())]
        return pa.schema(cols)


def _field_type(schema: Mapping[str, Any]) -> tuple[pa.DataType, Any]:
    """The Arrow type of a JSON Schema property, and the Python types its values may have
    (None: any JSON, kept as JSON text)."""
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return JSON_TYPES.get(kind, (pa.string(), None))


@dataclass
class TableReport:
    """The output's figures: every row's status, and why rows are not succeeded."""

    rows: int = 0
    statuses: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    orphan_results: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    parse: bool = False

    @property
    def accounted(self) -> bool:
        return sum(self.statuses.values()) == self.rows and self.orphan_results == 0

    @property
    def error_rate(self) -> float:
        return 1 - self.statuses["succeeded"] / self.rows if self.rows else 0.0

    @property
    def parse_rate(self) -> float | None:
        """Share of answers that parse, of those that came back (None without parsing)."""
        answered = self.statuses["succeeded"] + self.statuses[UNPARSED]
        if not self.parse:
            return None
        return self.statuses["succeeded"] / answered if answered else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "statuses": {s: self.statuses[s] for s in STATUSES},
                "accounted": self.accounted, "error_rate": round(self.error_rate, 4),
                "parse_rate": None if self.parse_rate is None else round(self.parse_rate, 4),
                "orphan_results": self.orphan_results,
                "reasons": dict(self.reasons.most_common(10)), "samples": self.samples}


def write_table(rows_path: str | Path, results_path: str | Path, out_path: str | Path,
                source_columns: Mapping[str, str], spec: OutputSpec, *,
                part_bytes: int = PART_BYTES,
                work_dir: str | Path | None = None) -> TableReport:
    """Join the row table and the results into the output table at `out_path`."""
    spec.check_columns(source_columns)
    schema = spec.schema(source_columns)
    report = TableReport(parse=spec.parse == "json")
    size = os.path.getsize(rows_path) + os.path.getsize(results_path)
    with pq.ParquetWriter(str(out_path), schema) as writer:
        for rows, results in _parts(rows_path, results_path,
                                    partitions_for(size, part_bytes), work_dir):
            index = pc.index_in(rows.column("custom_id"), value_set=results.column("custom_id"))
            report.orphan_results += results.num_rows - (len(index) - index.null_count)
            for start in range(0, rows.num_rows, BLOCK_ROWS):
                block = rows.slice(start, BLOCK_ROWS)
                matched = results.take(index.slice(start, BLOCK_ROWS))
                writer.write_table(_block(block, matched, source_columns, spec, schema, report))
            del rows, results, index
            release_memory()
    return report


def _parts(rows_path: str | Path, results_path: str | Path, n: int,
           work_dir: str | Path | None) -> Iterator[tuple[pa.Table, pa.Table]]:
    result_schema = pa.schema([RESULT_SCHEMA.field(c) for c in RESULT_COLUMNS])
    if n == 1:
        yield (pq.read_table(str(rows_path)).cast(ROW_SCHEMA),
               pq.read_table(str(results_path), columns=list(RESULT_COLUMNS)))
        return
    with HashSpill.temporary(n, work_dir, ".table-") as spill:
        for batch in open_parquet(rows_path).iter_batches(batch_size=65_536):
            spill.add("req", [batch])
        for batch in open_parquet(results_path).iter_batches(batch_size=65_536,
                                                             columns=list(RESULT_COLUMNS)):
            spill.add("res", [batch])
        spill.close()
        for i in range(n):
            yield spill.read("req", i, ROW_SCHEMA), spill.read("res", i, result_schema)


def _block(rows: pa.Table, matched: pa.Table, source_columns: Mapping[str, str],
           spec: OutputSpec, schema: pa.Schema, report: TableReport) -> pa.Table:
    values = [orjson.loads(text) for text in rows.column("row").to_pylist()]
    data: dict[str, list[Any]] = {
        name: [_source_value(v.get(name), kind) for v in values]
        for name, kind in source_columns.items()}
    p = spec.prefix
    data[p + "source_file"] = rows.column("source_file").to_pylist()
    data[p + "source_line"] = rows.column("source_line").to_pylist()
    status = [s if s is not None else "missing" for s in matched.column("status").to_pylist()]
    reason = [_failure(s, code, message) for s, code, message in zip(
        status, matched.column("error_code").to_pylist(),
        matched.column("error_message").to_pylist(), strict=True)]
    finish = matched.column("finish_reason").to_pylist()
    if spec.embeddings:
        data[p + "embedding"] = matched.column("embedding").to_pylist()
    else:
        answers = matched.column("content").to_pylist()
        data[p + "answer"] = answers
        if spec.parse == "json":
            parsed = {n: [] for n in spec.fields}
            for i, answer in enumerate(answers):
                fields, problem = (_parse(answer, spec.fields) if status[i] == "succeeded"
                                   else ({}, None))
                if problem:
                    status[i] = UNPARSED
                    reason[i] = ("cut at max_tokens: " if finish[i] == "length" else "") + problem
                for name in spec.fields:
                    parsed[name].append(fields.get(name))
            data.update({p + n: column for n, column in parsed.items()})
    data[p + "status"], data[p + "reason"], data[p + "finish_reason"] = status, reason, finish
    data[p + "prompt_tokens"] = matched.column("prompt_tokens").to_pylist()
    data[p + "completion_tokens"] = matched.column("completion_tokens").to_pylist()
    _record(report, rows.column("custom_id").to_pylist(), status, reason)
    return pa.table(data, schema=schema)


def _source_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if kind == "float":
        return float(value)
    return value


def _failure(status: str, code: str | None, message: str | None) -> str | None:
    if status == "succeeded":
        return None
    if status == "missing" and not (code or message):
        return "no result line for this request"
    return ": ".join(x for x in (code, message) if x) or status


def _parse(answer: str | None, fields: Mapping[str, Mapping[str, Any]]
           ) -> tuple[dict[str, Any], str | None]:
    """The answer's fields, typed, or the reason it does not parse."""
    try:
        obj = orjson.loads(answer or "")
    except orjson.JSONDecodeError as exc:
        return {}, f"answer is not JSON ({exc})"
    if not isinstance(obj, dict):
        return {}, "answer is not a JSON object"
    out: dict[str, Any] = {}
    for name, schema in fields.items():
        value = obj.get(name)
        _, kinds = _field_type(schema)
        if value is None:
            out[name] = None
        elif kinds is None:
            out[name] = value if isinstance(value, str) else orjson.dumps(value).decode()
        elif isinstance(value, kinds) and not (kinds is not bool and isinstance(value, bool)):
            out[name] = float(value) if kinds == (int, float) else value
        else:
            return {}, f"field {name!r}: expected {schema.get('type')}, got {value!r:.80}"
        if "enum" in schema and value is not None and value not in schema["enum"]:
            return {}, f"field {name!r}: {value!r:.80} is not one of {schema['enum']}"
    return out, None


def _record(report: TableReport, ids: list[str], status: list[str],
            reason: list[str | None]) -> None:
    for cid, s, why in zip(ids, status, reason, strict=True):
        report.rows += 1
        report.statuses[s] += 1
        if why:
            report.reasons[why[:120]] += 1
            if len(report.samples) < SAMPLE:
                report.samples.append({"custom_id": cid, "status": s, "reason": why[:300]})
