"""An inbox: a watched folder or S3 prefix, and which of its files are new or changed since the
last look.

A flow that takes user files lists them (`sources.list_source_files`) and scans the list
against a cursor: the versions (mtime or ETag) of the files seen last time, as a JSON object
``{name: version}``. A file is *changed* when its version differs from the cursor's, *new* when
the cursor lacks it; either way it is to be run again. A file that disappeared is dropped from
the next cursor, so it is new again if it comes back. The orchestrator keeps the cursor (the
Dagster layer: the sensor's cursor).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from batch_workflows.flows.sources import SourceFile


@dataclass(frozen=True)
class InboxScan:
    """One look at the inbox."""

    files: list[SourceFile]  # every file there now
    changed: list[SourceFile]  # new, or changed since the cursor
    cursor: str  # what to keep for the next scan


def scan_inbox(files: Iterable[SourceFile], cursor: str | None) -> InboxScan:
    """Compare the files now with the cursor of the previous scan (None: the first scan)."""
    files = list(files)
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    changed = [f for f in files if seen.get(f.name) != f.version]
    new_cursor = json.dumps({f.name: f.version for f in files}, sort_keys=True)
    return InboxScan(files, changed, new_cursor)


def run_key(file: SourceFile) -> str:
    """The key of one run of one version of a file: the same version never runs twice."""
    return f"{file.name}@{file.version}"


def unknown_keys(keys: Iterable[str], known: Iterable[str]) -> list[str]:
    """`keys` not in `known`, in their order, each once: the partitions still to add."""
    known = set(known)
    return [k for k in dict.fromkeys(keys) if k not in known]
