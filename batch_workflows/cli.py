"""`batch-workflows` command line: one module per subcommand under `batch_workflows.commands`.

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
COMMANDS = ("validate", "shard", "join", "cost", "serve", "cancel", "search")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-workflows",
        description="Batch inference over OpenAI-format Batch APIs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"batch_workflows.commands.{name}").register(subparsers)
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


if __name__ == "__main__":
    sys.exit(main())
