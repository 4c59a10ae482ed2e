"""A day's backlog: the file ``<YYYY-MM-DD>.jsonl`` (or ``.csv`` / ``.parquet``) under the watched
folder or S3 prefix, read as `Item`s.

Fields: ``id`` (a string or an integer), ``text`` (a non-empty string), optional ``created_at``,
optional ``labels`` (a list of the policy's category names; an empty list means the item is
safe; absent means unlabelled). In CSV, ``labels`` is a JSON list or names separated by ``|``.
A day with no file is a day with no items. Every problem of the file is collected (file, line,
field, reason) and raised as one InvalidInputError once the file is read, so nothing is
submitted for a file with a bad line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError, ProblemLog
from batch_workflows.flows.sources import SourceFile, list_source_files, read_rows

BACKLOG_SUFFIXES = (".jsonl", ".csv", ".parquet")
REQUIRED = ("id", "text")
OPTIONAL = ("created_at", "labels")


@dataclass(frozen=True)
class Item:
    """One piece of content to review."""

    id: str
    text: str
    created_at: str | None = None
    labels: tuple[str, ...] | None = None  # None: unlabelled; (): labelled safe
    line: int = 0  # 1-based line (row) in its file


def day_of(name: str) -> str | None:
    """The day a backlog file is for (``2025-03-01.jsonl`` -> ``2025-03-01``), else None."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "/" in name or f".{suffix.lower()}" not in BACKLOG_SUFFIXES:
        return None
    try:
        return dt.date.fromisoformat(stem).isoformat() if len(stem) == 10 else None
    except ValueError:
        return None


def backlog_files(watch_uri: str, s3_client: Any = None) -> list[SourceFile]:
    """The day files directly under `watch_uri` (other files are not backlogs), by name."""
    files = list_source_files(watch_uri, suffixes=BACKLOG_SUFFIXES, s3_client=s3_client)
    return [f for f in files if day_of(f.name) is not None]


def day_file(watch_uri: str, day: str, s3_client: Any = None) -> SourceFile | None:
    """The backlog file of `day`, or None; two files for one day (say .jsonl and .csv) is an
    error, not a choice to guess."""
    found = [f for f in backlog_files(watch_uri, s3_client) if day_of(f.name) == day]
    if len(found) > 1:
        raise ConfigurationError(
            f"{watch_uri}: {len(found)} backlog files for {day} "
            f"({', '.join(f.name for f in found)}); keep one")
    return found[0] if found else None


def read_backlog(uri: str, categories: Sequence[str], s3_client: Any = None) -> Iterator[Item]:
    """The items of one backlog file, streamed; InvalidInputError after the last row when any
    row was wrong (an id or text missing, labels not a list of `categories`)."""
    problems = ProblemLog(uri)
    known = set(categories)
    for row in read_rows(uri, problems, REQUIRED, OPTIONAL, s3_client=s3_client):
        item = _item(row.values, row.line, known, problems)
        if item is not None:
            yield item
    problems.raise_if_any()


def _item(values: dict[str, Any], line: int, known: set[str], problems: ProblemLog) -> Item | None:
    raw_id, text = values.get("id"), values.get("text")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id).strip() == "":
        problems.add(line, "id", "must be a non-empty string or an integer")
        return None
    if not isinstance(text, str) or not text.strip():
        problems.add(line, "text", "must be a non-empty string")
        return None
    labels = _labels(values.get("labels"), line, known, problems)
    created = values.get("created_at")
    return Item(str(raw_id), text, None if created is None else str(created),
                None if labels is False else labels, line)


def _labels(raw: Any, line: int, known: set[str], problems: ProblemLog) -> tuple[str, ...] | bool:
    """The labels as a tuple; False when absent (unlabelled) or wrong (then a problem)."""
    if raw is None:
        return False
    if isinstance(raw, str):  # CSV: a JSON list, or names separated by "|"
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = orjson.loads(text)
            except orjson.JSONDecodeError:
                problems.add(line, "labels", "not a JSON list")
                return False
        else:
            raw = [p.strip() for p in text.split("|") if p.strip()]
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        problems.add(line, "labels", "must be a list of category names")
        return False
    unknown = [v for v in raw if v not in known]
    if unknown:
        problems.add(line, "labels", f"not categories of the policy: {unknown}")
        return False
    return tuple(dict.fromkeys(raw))
