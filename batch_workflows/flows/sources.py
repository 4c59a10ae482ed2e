"""A flow's input files: list the files under a local folder or an S3 prefix, and read the rows
of JSONL, CSV and Parquet files, streamed.

Every flow reads its user sources through this module: the embeddings flow its documents, the
next flows their prompts and their backlogs. A file is never held in memory whole: lines are
streamed (S3 objects as a stream too), Parquet is read a row group at a time (an S3 Parquet
object through a temporary local copy, because Parquet needs random access).

Rows come with their 1-based line (the row number for Parquet), and everything wrong with a file
goes into one `errors.ProblemLog` (file, line, field, reason) that the caller extends with its
own checks and raises as one InvalidInputError at the end: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError, ProblemLog
from batch_workflows.parquet import open_parquet
from batch_workflows.s3 import is_s3, make_s3_client, split_s3, split_s3_prefix

JSONL_SUFFIXES = (".jsonl", ".ndjson")
ROW_SUFFIXES = (*JSONL_SUFFIXES, ".parquet", ".csv")  # the formats `read_rows` reads
PARQUET_BATCH_ROWS = 1024


# --- listing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """A file under a watched root: `name` is its path relative to the root."""

    name: str
    uri: str
    size: int
    version: str  # mtime_ns locally, ETag on S3: changes when the file changes
    modified: float = 0.0  # when it last changed, epoch seconds (mtime; S3's LastModified)


def join_uri(root: str, name: str) -> str:
    """The URI of `name` (a relative path) under a local folder or an S3 prefix."""
    if is_s3(root):
        return root.rstrip("/") + "/" + name
    return str(Path(root) / name)


def list_source_files(
    root: str, *, suffixes: Sequence[str], s3_client: Any = None
) -> list[SourceFile]:
    """Files ending in one of `suffixes` (the formats the flow reads, e.g. ROW_SUFFIXES) under a
    local folder or an S3 prefix: recursive, sorted by name, hidden files and folders left out.
    A missing local folder lists as empty."""
    wanted = tuple(s.lower() for s in suffixes)

    def is_source(name: str) -> bool:
        # Hidden files and folders (and partial uploads named so) are not sources.
        return name.lower().endswith(wanted) and not any(
            part.startswith(".") for part in name.split("/"))

    if is_s3(root):
        found = _list_s3(root, s3_client or make_s3_client(), is_source)
    else:
        found = _list_local(Path(root), is_source)
    return sorted(found, key=lambda f: f.name)


def _list_s3(root: str, client: Any, is_source: Callable[[str], bool]) -> Iterator[SourceFile]:
    bucket, prefix = split_s3_prefix(root)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix) :]
            if is_source(name):
                yield SourceFile(name, f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"],
                                 obj["LastModified"].timestamp())


def _list_local(base: Path, is_source: Callable[[str], bool]) -> Iterator[SourceFile]:
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        name = path.relative_to(base).as_posix()
        if is_source(name) and path.is_file():
            st = path.stat()
            yield SourceFile(name, str(path), st.st_size, str(st.st_mtime_ns), st.st_mtime)


# --- streaming a file ---------------------------------------------------------------------


def open_lines(uri: str, s3_client: Any = None) -> Iterator[bytes]:
    """Raw lines (newline kept) of a local file or an S3 object, streamed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        body = (s3_client or make_s3_client()).get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_lines(keepends=True)
        finally:
            body.close()
    else:
        with open(uri, "rb") as fh:
            yield from fh


def decode_line(raw: bytes, first: bool) -> str:
    """A raw line as text; the first line of a file loses its UTF-8 byte-order mark."""
    text = raw.decode("utf-8")
    return text.removeprefix("\ufeff") if first else text


@contextmanager
def local_path(uri: str, s3_client: Any = None, suffix: str = "") -> Iterator[str]:
    """A local path to read `uri` from: the file itself, or a temporary copy of an S3 object
    (removed after the block), for formats that need random access."""
    if not is_s3(uri):
        yield uri
        return
    bucket, key = split_s3(uri)
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    try:
        (s3_client or make_s3_client()).download_file(bucket, key, tmp)
        yield tmp
    finally:
        os.unlink(tmp)


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a source file: its 1-based line (row number for Parquet) and the values of
    the columns asked for (None where a JSON line lacks one)."""

    line: int
    values: dict[str, Any]


def read_rows(
    uri: str,
    problems: ProblemLog,
    required: Sequence[str],
    optional: Sequence[str] = (),
    s3_client: Any = None,
    *,
    every_column: bool = False,
    file_format: str | None = None,
) -> Iterator[Row]:
    """Stream the rows of one JSONL, CSV or Parquet file (`file_format` ``jsonl``, ``csv`` or
    ``parquet``; by default chosen by suffix), with the values of the `required` and
    `optional` columns (`every_column`: of all the row's columns).

    A line that is not a JSON object, and a CSV or Parquet file without a required column, go
    into `problems` (a file missing a column yields no rows); checking the values is the
    caller's, into the same log."""
    kind = file_format or _format_of(uri)
    if kind == "jsonl":
        yield from _jsonl_rows(uri, problems, [*required, *optional], s3_client, every_column)
    elif kind == "csv":
        yield from _csv_rows(uri, problems, required, optional, s3_client, every_column)
    elif kind == "parquet":
        yield from _parquet_rows(uri, problems, required, optional, s3_client, every_column)
    else:
        raise ConfigurationError(
            f"{uri}: unsupported file type; expected one of {', '.join(ROW_SUFFIXES)}"
        )


def _format_of(uri: str) -> str | None:
    lower = uri.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return next((k for k in ("csv", "parquet") if lower.endswith("." + k)), None)


def _jsonl_rows(uri: str, problems: ProblemLog, columns: list[str], s3: Any,
                every_column: bool = False) -> Iterator[Row]:
    for n, raw in enumerate(open_lines(uri, s3), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError as exc:
            problems.add(n, None, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            problems.add(n, None, "line is not a JSON object")
            continue
        yield Row(n, obj if every_column else {c: obj.get(c) for c in columns})


def _csv_rows(
    uri: str, problems: ProblemLog, required: Sequence[str], optional: Sequence[str], s3: Any,
    every_column: bool = False,
) -> Iterator[Row]:
    lines = (decode_line(raw, i == 0) for i, raw in enumerate(open_lines(uri, s3)))
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    for column in missing:
        problems.add(1, column, f"column missing from header {header}")
    if missing:
        return
    columns = header if every_column else [*required, *optional]
    for row in reader:
        yield Row(reader.line_num, {c: row.get(c) for c in columns})


def _parquet_rows(
    uri: str, problems: ProblemLog, required: Sequence[str], optional: Sequence[str], s3: Any,
    every_column: bool = False,
) -> Iterator[Row]:
    with local_path(uri, s3, suffix=".parquet") as path:
        pf = open_parquet(path)
        names = pf.schema_arrow.names
        missing = [c for c in required if c not in names]
        for column in missing:
            problems.add(1, column, f"column missing (columns: {names})")
        if missing:
            return
        columns = list(names) if every_column else list(
            dict.fromkeys([*required, *(c for c in optional if c in names)]))
        absent = {c: None for c in optional if c not in names}
        row = 0
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            for values in batch.to_pylist():
                row += 1
                yield Row(row, {**values, **absent})
