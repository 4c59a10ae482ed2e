"""How the checking commands (`validate`, `sft-check`) print what they found: exactly one line
per problem on stdout (``FILE:LINE: FIELD: REASON``), context on stderr; exit 0 or 1."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def print_reports(reports: Sequence[Any]) -> int:
    """Reports with ``ok``, ``problems``, ``truncated`` and ``summary()``: 0 when all are ok
    (a summary line each on stdout), else 1 (the problems on stdout, the summaries on stderr)."""
    bad = [r for r in reports if not r.ok]
    if not bad:
        for report in reports:
            print(report.summary())
        return 0
    for report in bad:
        for problem in report.problems:
            print(problem)
    for report in reports:  # context goes to stderr so stdout stays one line per problem
        note = " (list truncated)" if report.truncated else ""
        print(report.summary() + note, file=sys.stderr)
    return 1
