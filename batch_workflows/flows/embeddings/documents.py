"""The embeddings flow's documents: the shipped corpus, or the user's files, by partition key.

User files, by suffix:

* ``.jsonl`` / ``.ndjson``: one JSON object per line with an id field and a text field
  (names configurable, default ``id`` / ``text``), and an optional ``title``.
* ``.parquet`` and ``.csv``: the same columns.
* ``.txt`` / ``.md``: ``text_unit="file"`` (default): the whole file is one document whose id is
  the file name without suffix (a Markdown file's ``# heading`` is its title);
  ``text_unit="line"``: every non-blank line is a document with id ``<stem>:<line number>``.

Bad rows (not an object, missing or empty text, missing id, duplicate id) are collected and
raised together as InvalidInputError naming file, 1-based line (row for Parquet) and field,
after the valid documents before them were yielded; nothing is dropped silently.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batch_workflows.errors import ConfigurationError, ProblemLog
from batch_workflows.flows.corpus import Document, first_line, parse_pydoc_key, pydoc_documents
from batch_workflows.flows.sources import (
    ROW_SUFFIXES,
    decode_line,
    join_uri,
    open_lines,
    read_rows,
)
from batch_workflows.s3 import is_s3, split_s3

TITLE_FIELD = "title"  # optional column/field of user files: the documents' titles
TEXT_SUFFIXES = (".txt", ".md")
DOCUMENT_SUFFIXES = (*ROW_SUFFIXES, *TEXT_SUFFIXES)  # what the inbox picks up


class _Documents:
    """Turns (line, id, text, title) into documents, logging what is wrong with a row."""

    def __init__(self, problems: ProblemLog):
        self.problems = problems
        self.seen: set[str] = set()

    def row(
        self, line: int, doc_id: Any, text: Any, id_field: str, text_field: str, title: Any = None
    ) -> Document | None:
        log = self.problems.add
        if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
            log(line, id_field, "missing document id")
            return None
        if isinstance(doc_id, float) and doc_id.is_integer():
            doc_id = int(doc_id)  # CSV/Parquet numeric ids: "7", not "7.0"
        if not isinstance(doc_id, str | int):
            log(line, id_field, f"id must be a string or integer, got {type(doc_id).__name__}")
            return None
        if not isinstance(text, str):
            log(line, text_field,
                "missing" if text is None else f"must be a string, got {type(text).__name__}")
            return None
        if not text.strip():
            log(line, text_field, "empty text")
            return None
        key = str(doc_id)
        if key in self.seen:
            log(line, id_field, f"duplicate document id {key!r}")
            return None
        self.seen.add(key)
        # An optional title becomes the chunks' contextual header; a non-string one is ignored.
        return Document(key, text, self.problems.source,
                        title.strip() if isinstance(title, str) else "")


def _markdown_title(text: str) -> str | None:
    """A Markdown file's title: its first line when that is a `# heading`."""
    line = first_line(text)
    return line.lstrip("#").strip() if line.startswith("# ") else None


def _read_text(uri: str, docs: _Documents, text_unit: str, s3: Any) -> Iterator[Document]:
    stem = Path(split_s3(uri)[1] if is_s3(uri) else uri).stem
    if text_unit == "line":
        for n, raw in enumerate(open_lines(uri, s3), start=1):
            text = decode_line(raw, n == 1).strip()
            if text:
                doc = docs.row(n, f"{stem}:{n}", text, "id", "text")
                if doc:
                    yield doc
        return
    buf = io.StringIO()
    for i, raw in enumerate(open_lines(uri, s3)):
        buf.write(decode_line(raw, i == 0))
    text = buf.getvalue()
    doc = docs.row(1, stem, text, "id", "text",
                   _markdown_title(text) if uri.endswith(".md") else None)
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
    if not lower.endswith(DOCUMENT_SUFFIXES):
        raise ConfigurationError(
            f"{uri}: unsupported file type; expected one of {', '.join(DOCUMENT_SUFFIXES)}"
        )
    problems = ProblemLog(source or uri, max_problems)
    docs = _Documents(problems)
    if lower.endswith(TEXT_SUFFIXES):
        yield from _read_text(uri, docs, text_unit, s3_client)
    else:
        for row in read_rows(uri, problems, [id_field, text_field], [TITLE_FIELD], s3_client):
            v = row.values
            doc = docs.row(row.line, v[id_field], v[text_field], id_field, text_field,
                           v[TITLE_FIELD])
            if doc:
                yield doc
    problems.raise_if_any()


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
