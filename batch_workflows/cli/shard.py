"""`batch-workflows shard INPUT --provider P --out DIR`: split a request file into shards.

Validates INPUT first (problems as `FILE:LINE: FIELD: REASON`, exit 1), then writes shards that
fit the provider's per-file limits (or the given overrides) and DIR/manifest.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batch_workflows.errors import ConfigurationError
from batch_workflows.profiles import PROFILES, get_profile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shard",
        help="split a JSONL request file into shards within provider limits",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("input", metavar="INPUT", help="JSONL batch input file")
    parser.add_argument(
        "--provider", required=True, help=f"provider profile: {', '.join(sorted(PROFILES))}"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--endpoint", default=None, help="required endpoint")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    parser.add_argument("--max-requests", type=int, default=None, metavar="N")
    parser.add_argument("--max-bytes", type=int, default=None, metavar="N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch_workflows.cli.validate import unreadable
    from batch_workflows.requests import (
        RequestValidator,
        iter_requests,
        validate_file,
        write_shards,
    )

    try:
        profile = get_profile(args.provider)
        if args.endpoint is not None:
            RequestValidator(profile, args.endpoint)
    except ConfigurationError as exc:
        print(f"batch-workflows shard: error: {exc}", file=sys.stderr)
        return 2
    for name, value in (("--max-requests", args.max_requests), ("--max-bytes", args.max_bytes)):
        if value is not None and value < 1:
            print(f"batch-workflows shard: error: {name} must be >= 1", file=sys.stderr)
            return 2
    why = unreadable(args.input)
    if why:
        print(f"batch-workflows shard: error: cannot read {args.input}: {why}", file=sys.stderr)
        return 2

    # the per-file limits are what sharding is for: the input may exceed them
    report = validate_file(args.input, profile, args.endpoint, file_limits=False)
    if not report.ok:
        for problem in report.problems:
            print(problem)
        print(report.summary(), file=sys.stderr)
        return 1
    out = Path(args.out)
    manifest = write_shards(
        iter_requests(args.input),
        out,
        profile,
        endpoint=report.endpoint,
        prefix=args.prefix,
        max_requests_per_file=args.max_requests,
        max_bytes_per_file=args.max_bytes,
    )
    manifest.write_json(out / "manifest.json")
    for shard in manifest.shards:
        print(
            f"{shard.path}: {shard.lines} request(s), {shard.bytes:,} bytes, sha256 {shard.sha256}"
        )
    print(
        f"{len(manifest.shards)} shard(s), {manifest.total_requests} request(s), "
        f"endpoint {manifest.endpoint}, model {manifest.model or '-'}, "
        f"content hash {manifest.content_hash}; manifest {out / 'manifest.json'}"
    )
    return 0
