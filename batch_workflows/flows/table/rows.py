"""The source of a table flow: where its files are, and the row table it keeps of them.

A source is a local folder, an ``s3://`` prefix or one file, in one format (``jsonl``, ``csv``
or ``parquet``). Each row becomes one request; the row table (the flow's side table, written
while the requests are built) keeps, by ``custom_id``, the row's file, line and every column
as JSON text, with each column's kind, so that the output can be one row per source row with
the source's columns, whatever came back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from batch_workflows.errors import ConfigurationError, ProblemLog
from batch_workflows.flows.side_table import DEFAULT_ROW_GROUP, SideTableWriter
from batch_workflows.flows.sources import SourceFile, join_uri, list_source_files, read_rows
from batch_workflows.flows.table.template import RequestTemplate
from batch_workflows.s3 import is_s3

FORMATS: dict[str, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".ndjson"),
    "csv": (".csv",),
    "parquet": (".parquet",),
}
ROW_SCHEMA = pa.schema([
    ("custom_id", pa.string()),
    ("source_file", pa.string()),
    ("source_line", pa.int64()),
    ("row", pa.string()),  # every column of the row, as a JSON object
])
# A column's kind, from the values seen: one Arrow type for the output table's column.
KINDS = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
         "json": pa.string()}


@dataclass(frozen=True)
class Source:
    """Where a table flow's rows come from."""

    uri: str
    format: str = "jsonl"
    id_field: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigurationError(
                f"source.format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if not self.uri:
            raise ConfigurationError("source.uri: a folder, an s3:// prefix or a file is needed")

    @property
    def is_file(self) -> bool:
        return self.uri.lower().endswith(FORMATS[self.format])

    def files(self, s3_client: Any = None) -> list[SourceFile]:
        """The files of the source: the file itself, or those in its format under the folder."""
        if self.is_file:
            return [SourceFile(Path(self.uri).name, self.uri, 0, "")]
        return list_source_files(self.uri, suffixes=FORMATS[self.format], s3_client=s3_client)

    def file_uri(self, name: str) -> str:
        """The URI of `name`, a path under the source's folder or prefix."""
        return join_uri(self.uri, name)


class RowTable:
    """Streams the source rows to the row table, and learns each column's kind."""

    def __init__(self, path: str | Path, row_group: int = DEFAULT_ROW_GROUP):
        self._table = SideTableWriter(path, ROW_SCHEMA, row_group)
        self.path = self._table.path
        self.rows = 0
        self._kinds: dict[str, Counter] = {}

    def add(self, custom_id: str, file: str, line: int, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            kinds = self._kinds.setdefault(name, Counter())
            if value is not None:
                kinds[_kind(value)] += 1
        self._table.append({"custom_id": custom_id, "source_file": file, "source_line": line,
                            "row": orjson.dumps(values, default=str).decode()})
        self.rows += 1

    def columns(self) -> dict[str, str]:
        """Each column seen, in order of first sight, with one kind for all its values."""
        return {name: _one_kind(kinds) for name, kinds in self._kinds.items()}

    def close(self) -> None:
        self._table.close()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "json"


def _one_kind(kinds: Counter) -> str:
    seen = set(kinds)
    if len(seen) <= 1:
        return next(iter(seen), "string")
    if seen == {"int", "float"}:
        return "float"
    return "json"  # mixed: each value as JSON text


def build_requests(source: Source, files: list[SourceFile], template: RequestTemplate,
                   table: RowTable, s3_client: Any = None,
                   render: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
                   ) -> Iterator[dict[str, Any]]:
    """One request per row of `files`, its row added to `table`; the body is
    ``render(row values)`` (default: the template's). Every problem (a missing column, a row
    without a value a placeholder or the id needs) is collected per file and raised as one
    InvalidInputError naming file, line and field: nothing is uploaded then."""
    render = render or template.render
    required = list(dict.fromkeys([*template.columns,
                                   *([source.id_field] if source.id_field else [])]))
    many = len(files) > 1
    for file in files:
        if not is_s3(file.uri) and not Path(file.uri).is_file():
            raise ConfigurationError(f"{file.uri}: no such file (the source file of "
                                     f"{file.name!r})")
        problems = ProblemLog(file.uri)
        for row in read_rows(file.uri, problems, required, s3_client=s3_client,
                             every_column=True, file_format=source.format):
            missing = [c for c in required if row.values.get(c) is None]
            for column in missing:
                problems.add(row.line, column, "no value" if column in row.values
                             else "column missing from this row")
            if missing:
                continue
            custom_id = row_id(source, file.name if many else None, row.line, row.values)
            table.add(custom_id, file.name, row.line, row.values)
            yield {"custom_id": custom_id, "method": "POST", "url": template.endpoint,
                   "body": render(row.values)}
        problems.raise_if_any()


def row_id(source: Source, file: str | None, line: int, values: Mapping[str, Any]) -> str:
    """A row's custom_id: its `id_field` value; without one, its line (``<file>:<line>`` when
    the source has several files)."""
    if source.id_field:
        return str(values[source.id_field])
    return f"{file}:{line}" if file else f"row-{line}"
