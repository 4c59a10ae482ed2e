"""Documents to embed: the shipped corpus and readers for the user's own files.

A document is `(id, text, source)`. Readers stream: a file is never held in memory whole
(Parquet is read a row group at a time; S3 objects are read as a stream, Parquet ones through
a temporary local copy because Parquet needs random access).

Default corpus: the Python language reference topics of the standard library's `pydoc_data`
(79 documents in Python 3.11; id = the topic key, e.g. "try", "lambda"), split into a few
shards so it maps onto a few partitions.

User files, by suffix:

* ``.jsonl`` / ``.ndjson``: one JSON object per line with an id field and a text field
  (names configurable, default ``id`` / ``text``).
* ``.parquet`` and ``.csv``: the same two columns.
* ``.txt`` / ``.md``: ``text_unit="file"`` (default): the whole file is one document whose id is
  the file name without suffix; ``text_unit="line"``: every non-blank line is a document with id
  ``<stem>:<line number>``.

Bad rows (not an object, missing or empty text, missing id, duplicate id) are collected and
raised together as InvalidInputError naming file, 1-based line (row for Parquet) and field,
after the valid documents before them were yielded; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError, InvalidInputError, Problem
from batch_workflows.parquet import open_parquet

PYDOC_SOURCE = "pydoc_data"
PYDOC_PREFIX = "pydoc-"
DEFAULT_PYDOC_SHARDS = 2
TITLE_FIELD = "title"  # optional column/field of user files: the documents' titles
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt", ".md")
SUPPORTED_SUFFIXES = (*JSONL_SUFFIXES, ".parquet", ".csv", *TEXT_SUFFIXES)


@dataclass(frozen=True)
class Document:
    """One document: its id (unique within the collection), text and where it came from."""

    id: str
    text: str
    source: str
    title: str = ""  # prepended to every chunk when embedded (contextual chunk header)


# --- the shipped corpus -------------------------------------------------------------------


def pydoc_topics() -> dict[str, str]:
    """The language reference topics of this Python's `pydoc_data`, by topic key."""
    from pydoc_data.topics import topics

    return dict(topics)


def first_line(text: str) -> str:
    """The first non-blank line, stripped: a pydoc topic's heading (`The "try" statement`)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def pydoc_shard_keys(shards: int = DEFAULT_PYDOC_SHARDS) -> list[str]:
    """Partition keys of the shipped corpus: `pydoc-1-of-2`, `pydoc-2-of-2`, ..."""
    return [f"{PYDOC_PREFIX}{i}-of-{shards}" for i in range(1, shards + 1)]


def parse_pydoc_key(key: str) -> tuple[int, int] | None:
    """`pydoc-i-of-n` -> (i, n); None for any other key."""
    if not key.startswith(PYDOC_PREFIX):
        return None
    try:
        i, n = key[len(PYDOC_PREFIX) :].split("-of-")
        index, shards = int(i), int(n)
    except ValueError:
        return None
    return (index, shards) if 1 <= index <= shards else None


def pydoc_documents(shard: int = 1, shards: int = 1) -> Iterator[Document]:
    """Topics of shard `shard` (1-based) of `shards`: contiguous runs of sorted topic keys,
    cut so that the shards hold about the same amount of text."""
    topics = pydoc_topics()
    keys = sorted(topics)
    total = sum(len(topics[k]) for k in keys)
    done = 0
    for key in keys:
        # The shard of a topic is where the middle of its text falls: stable and balanced.
        middle = done + len(topics[key]) / 2
        done += len(topics[key])
        if min(int(middle * shards / total), shards - 1) == shard - 1:
            yield Document(key, topics[key], PYDOC_SOURCE, first_line(topics[key]))


# --- user files ---------------------------------------------------------------------------


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigurationError(f"not an S3 URI: {uri}")
    return bucket, key


def make_s3_client() -> Any:
    """A boto3 S3 client from the environment (AWS_* variables; AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL for S3-compatible servers, as the artifact store reads them)."""
    import boto3

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", endpoint_url=endpoint or None)


@dataclass(frozen=True)
class SourceFile:
    """A file under a watched root: `name` is its path relative to the root."""

    name: str
    uri: str
    size: int
    version: str  # mtime_ns locally, ETag on S3: changes when the file changes


def join_uri(root: str, name: str) -> str:
    if is_s3(root):
        return root.rstrip("/") + "/" + name
    return str(Path(root) / name)


def list_source_files(root: str, s3_client: Any = None) -> list[SourceFile]:
    """Supported files under a local folder or an S3 prefix (recursive, sorted by name).
    A missing local folder lists as empty."""
    found: list[SourceFile] = []
    if is_s3(root):
        bucket, prefix = split_s3(root)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        client = s3_client or make_s3_client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if _hidden(name):
                    continue
                if name.lower().endswith(SUPPORTED_SUFFIXES):
                    found.append(
                        SourceFile(name, f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"])
                    )
    else:
        base = Path(root)
        if not base.is_dir():
            return []
        for path in base.rglob("*"):
            if path.is_file() and path.name.lower().endswith(SUPPORTED_SUFFIXES):
                if _hidden(path.relative_to(base).as_posix()):
                    continue
                st = path.stat()
                found.append(
                    SourceFile(path.relative_to(base).as_posix(), str(path), st.st_size, str(st.st_mtime_ns))
                )
    return sorted(found, key=lambda f: f.name)


def _hidden(name: str) -> bool:
    """Hidden files and folders (and partial uploads named so) are not sources."""
    return any(part.startswith(".") for part in name.split("/"))


def _open_lines(uri: str, s3_client: Any) -> Iterator[bytes]:
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


def _decode(raw: bytes, first: bool) -> str:
    text = raw.decode("utf-8")
    return text.removeprefix("\ufeff") if first else text


class _Collector:
    """Turns raw (line, id, text) rows into documents, collecting problems."""

    def __init__(self, source: str, max_problems: int):
        self.source = source
        self.max_problems = max_problems
        self.problems: list[Problem] = []
        self.truncated = False
        self.seen: set[str] = set()

    def problem(self, line: int, field: str | None, reason: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(Problem(self.source, line, field, reason))
        else:
            self.truncated = True

    def row(
        self, line: int, doc_id: Any, text: Any, id_field: str, text_field: str, title: Any = None
    ) -> Document | None:
        if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
            self.problem(line, id_field, "missing document id")
            return None
        if isinstance(doc_id, float) and doc_id.is_integer():
            doc_id = int(doc_id)  # CSV/Parquet numeric ids: "7", not "7.0"
        if not isinstance(doc_id, str | int):
            self.problem(line, id_field, f"id must be a string or integer, got {type(doc_id).__name__}")
            return None
        if not isinstance(text, str):
            reason = "missing" if text is None else f"must be a string, got {type(text).__name__}"
            self.problem(line, text_field, reason)
            return None
        if not text.strip():
            self.problem(line, text_field, "empty text")
            return None
        key = str(doc_id)
        if key in self.seen:
            self.problem(line, id_field, f"duplicate document id {key!r}")
            return None
        self.seen.add(key)
        # An optional title becomes the chunks' contextual header; a non-string one is ignored.
        return Document(key, text, self.source, title.strip() if isinstance(title, str) else "")

    def finish(self) -> None:
        if self.problems:
            raise InvalidInputError(self.problems, self.truncated)


def _markdown_title(text: str) -> str | None:
    """A Markdown file's title: its first line when that is a `# heading`."""
    line = first_line(text)
    return line.lstrip("#").strip() if line.startswith("# ") else None


def _read_jsonl(uri: str, c: _Collector, id_field: str, text_field: str, s3: Any) -> Iterator[Document]:
    for n, raw in enumerate(_open_lines(uri, s3), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError as exc:
            c.problem(n, None, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            c.problem(n, None, "line is not a JSON object")
            continue
        doc = c.row(n, obj.get(id_field), obj.get(text_field), id_field, text_field,
                    obj.get(TITLE_FIELD))
        if doc:
            yield doc


def _read_csv(uri: str, c: _Collector, id_field: str, text_field: str, s3: Any) -> Iterator[Document]:
    lines = (_decode(raw, i == 0) for i, raw in enumerate(_open_lines(uri, s3)))
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    for field in (id_field, text_field):
        if field not in header:
            c.problem(1, field, f"column missing from header {header}")
    if c.problems:
        return
    for row in reader:
        doc = c.row(reader.line_num, row.get(id_field), row.get(text_field), id_field, text_field,
                    row.get(TITLE_FIELD))
        if doc:
            yield doc


def _read_parquet(uri: str, c: _Collector, id_field: str, text_field: str, s3: Any) -> Iterator[Document]:

    tmp: str | None = None
    path = uri
    if is_s3(uri):
        # Parquet needs random access: stream the object to a temporary file first.
        bucket, key = split_s3(uri)
        fd, tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        (s3 or make_s3_client()).download_file(bucket, key, tmp)
        path = tmp
    try:
        pf = open_parquet(path)
        names = pf.schema_arrow.names
        for field in (id_field, text_field):
            if field not in names:
                c.problem(1, field, f"column missing (columns: {names})")
        if c.problems:
            return
        row = 0
        columns = [id_field, text_field]
        if TITLE_FIELD in names and TITLE_FIELD not in columns:
            columns.append(TITLE_FIELD)
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            ids = batch.column(0).to_pylist()
            texts = batch.column(1).to_pylist()
            titles = batch.column(2).to_pylist() if len(columns) == 3 else [None] * len(ids)
            for doc_id, text, title in zip(ids, texts, titles, strict=True):
                row += 1
                doc = c.row(row, doc_id, text, id_field, text_field, title)
                if doc:
                    yield doc
    finally:
        if tmp:
            os.unlink(tmp)


def _read_text(uri: str, c: _Collector, text_unit: str, s3: Any) -> Iterator[Document]:
    stem = Path(split_s3(uri)[1] if is_s3(uri) else uri).stem
    if text_unit == "line":
        for n, raw in enumerate(_open_lines(uri, s3), start=1):
            text = _decode(raw, n == 1).strip()
            if text:
                doc = c.row(n, f"{stem}:{n}", text, "id", "text")
                if doc:
                    yield doc
        return
    buf = io.StringIO()
    for i, raw in enumerate(_open_lines(uri, s3)):
        buf.write(_decode(raw, i == 0))
    text = buf.getvalue()
    doc = c.row(1, stem, text, "id", "text", _markdown_title(text) if uri.endswith(".md") else None)
    if doc:
        yield doc


def read_documents(
    uri: str,
    *,
    id_field: str = "id",
    text_field: str = "text",
    text_unit: str = "file",
    s3_client: Any = None,
    max_problems: int = 100,
    source: str | None = None,
) -> Iterator[Document]:
    """Stream the documents of one file (local path or s3://), chosen by suffix.

    `source` is what each document records as its origin (default: the URI)."""
    if text_unit not in ("file", "line"):
        raise ConfigurationError(f"text_unit must be 'file' or 'line', got {text_unit!r}")
    lower = uri.lower()
    c = _Collector(source or uri, max_problems)
    if lower.endswith(JSONL_SUFFIXES):
        yield from _read_jsonl(uri, c, id_field, text_field, s3_client)
    elif lower.endswith(".csv"):
        yield from _read_csv(uri, c, id_field, text_field, s3_client)
    elif lower.endswith(".parquet"):
        yield from _read_parquet(uri, c, id_field, text_field, s3_client)
    elif lower.endswith(TEXT_SUFFIXES):
        yield from _read_text(uri, c, text_unit, s3_client)
    else:
        raise ConfigurationError(
            f"{uri}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    c.finish()


def documents_for_key(
    key: str,
    watch_uri: str,
    *,
    id_field: str = "id",
    text_field: str = "text",
    text_unit: str = "file",
    s3_client: Any = None,
) -> Iterator[Document]:
    """The documents of one partition (source shard) key: `pydoc-i-of-n` for the shipped
    corpus, otherwise a file name relative to the watched folder or S3 prefix."""
    shard = parse_pydoc_key(key)
    if shard:
        return pydoc_documents(*shard)
    return read_documents(
        join_uri(watch_uri, key),
        id_field=id_field,
        text_field=text_field,
        text_unit=text_unit,
        s3_client=s3_client,
        source=key,
    )

