"""`batch-workflows sft-check FILE...`: is a JSONL file a fine-tuning dataset that fine-tuning
APIs accept? (The rules: `batch_workflows.flows.distillation.sft_rules`.)

Exit 0: every file is valid (one summary line per file on stdout). Exit 1: problems, exactly one
line per problem on stdout, `FILE:LINE: FIELD: REASON`. Exit 2: usage error, unreadable file.
Fewer than 10 examples (OpenAI's minimum) is a warning on stderr, not a problem.
"""

from __future__ import annotations

import argparse
import sys

from batch_workflows.cli.reports import print_reports
from batch_workflows.cli.validate import unreadable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sft-check",
        help="check supervised fine-tuning JSONL files (chat messages or prompt/completion)",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL dataset file(s)")
    parser.add_argument(
        "--max-problems", type=int, default=100, help="stop listing after N problems per file"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch_workflows.flows.distillation.sft_rules import check_file

    if args.max_problems < 1:
        print("batch-workflows sft-check: error: --max-problems must be >= 1", file=sys.stderr)
        return 2
    for path in args.files:
        why = unreadable(path)
        if why:
            print(f"batch-workflows sft-check: error: cannot read {path}: {why}", file=sys.stderr)
            return 2
    reports = []
    for path in args.files:
        try:
            reports.append(check_file(path, args.max_problems))
        except OSError as exc:
            print(f"batch-workflows sft-check: error: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    for report in reports:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return print_reports(reports)
