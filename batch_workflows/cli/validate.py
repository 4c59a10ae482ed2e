"""`batch-workflows validate FILE...`: check batch input files before paying for them.

Exit 0: every file is valid (one summary line per file on stdout). Exit 1: problems, exactly one
line per problem on stdout, `FILE:LINE: FIELD: REASON`. Exit 2: usage error, unreadable file.
"""

from __future__ import annotations

import argparse
import os
import sys

from batch_workflows.cli.reports import print_reports
from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import PROFILES, get_profile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check JSONL batch input files line by line",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL batch input file(s)")
    parser.add_argument(
        "--provider",
        default="local",
        help=f"provider profile whose limits apply: {', '.join(sorted(PROFILES))} (default local)",
    )
    parser.add_argument(
        "--endpoint", default=None, help="required endpoint, e.g. /v1/chat/completions"
    )
    parser.add_argument(
        "--max-problems", type=int, default=100, help="stop listing after N problems per file"
    )
    parser.set_defaults(func=run)


def unreadable(path: str) -> str | None:
    """Why `path` cannot be read as a file, or None when it can."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory"
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def run(args: argparse.Namespace) -> int:
    from batch_workflows.requests import RequestValidator, validate_file

    try:
        profile = get_profile(args.provider)
        if args.endpoint is not None:
            RequestValidator(profile, args.endpoint)  # rejects an endpoint the profile lacks
    except ConfigurationError as exc:
        print(f"batch-workflows validate: error: {exc}", file=sys.stderr)
        return 2
    if args.max_problems < 1:
        print("batch-workflows validate: error: --max-problems must be >= 1", file=sys.stderr)
        return 2
    for path in args.files:
        why = unreadable(path)
        if why:
            print(f"batch-workflows validate: error: cannot read {path}: {why}", file=sys.stderr)
            return 2

    reports = []
    for path in args.files:
        try:
            reports.append(validate_file(path, profile, args.endpoint, args.max_problems))
        except OSError as exc:
            print(f"batch-workflows validate: error: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    return print_reports(reports)
