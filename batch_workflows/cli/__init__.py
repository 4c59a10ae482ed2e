"""`batch-workflows` command line: one module per subcommand.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the default. Exit codes: 0 success, 1 the work found a problem
(invalid input, failed requests), 2 usage error (argparse's own code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from batch_workflows.errors import BatchError

# Command modules import their heavy dependencies (torch, Starlette, Qdrant) inside run(),
# so that `batch-workflows validate` never pays for them.
COMMANDS = {
    "validate": "batch_workflows.cli.validate",
    "shard": "batch_workflows.cli.shard",
    "join": "batch_workflows.cli.join",
    "cost": "batch_workflows.cli.cost",
    "serve": "batch_workflows.cli.serve",
    "cancel": "batch_workflows.cli.cancel",
    "search": "batch_workflows.flows.embeddings.search",
    "sft-check": "batch_workflows.cli.sft_check",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-workflows",
        description="Batch inference over OpenAI-format Batch APIs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

