"""`batch-workflows join REQUESTS OUTPUT [ERRORS] --out RESULTS.parquet`: account for every request.

Joins batch output and error files already on disk to the submitted request file by custom_id
and writes one Parquet row per request. Prints the count per status, the error breakdown,
result lines for ids never submitted (unexpected) and duplicate lines. Exit 0: every request
succeeded; 1: some request failed, errored or is missing (the Parquet file is written all the
same) or a file could not be read; 2: usage error, a file that does not exist.
"""

from __future__ import annotations

import argparse
import sys

from batch_workflows.cli.validate import unreadable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "join",
        help="join batch output/error files to the requests by custom_id into Parquet",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("requests", metavar="REQUESTS", help="the submitted JSONL request file")
    parser.add_argument("output", metavar="OUTPUT", help="the batch's output file (JSONL)")
    parser.add_argument("errors", metavar="ERRORS", nargs="?", help="the batch's error file (JSONL)")
    parser.add_argument("--out", required=True, metavar="RESULTS.parquet", help="Parquet file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch_workflows.results import STATUSES, SUCCEEDED, join_results

    paths = [p for p in (args.requests, args.output, args.errors) if p is not None]
    for path in paths:
        why = unreadable(path)
        if why:
            print(f"batch-workflows join: error: {path}: {why}", file=sys.stderr)
            return 2
    rs = join_results(args.requests, args.output, args.errors or (), out_path=args.out)
    print(f"{rs.total} requests -> {rs.path}")
    for status in STATUSES:
        print(f"  {status:<10} {rs.counts.get(status, 0)}")
    if rs.error_breakdown:
        print("errors:")
        width = max(len(code) for code in rs.error_breakdown)
        for code, n in rs.error_breakdown.items():
            print(f"  {code:<{width}}  {n}")
    if rs.unexpected:
        sample = ", ".join(rs.unexpected_sample[:5])
        print(f"unexpected: {rs.unexpected} result line(s) for custom_ids never submitted (e.g. {sample})")
    if rs.duplicates:
        print(f"duplicates: {rs.duplicates} extra result line(s) for submitted custom_ids")
    print(f"tokens: prompt {rs.prompt_tokens}, completion {rs.completion_tokens}, total {rs.total_tokens}")
    return 0 if rs.counts.get(SUCCEEDED, 0) == rs.total else 1
