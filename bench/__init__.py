"""Benchmarks: each module exposes `run(scale) -> list[dict]`; `python -m bench` runs them all."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def run_alone(name: str, run: Callable[[str], list[dict]], argv: list[str] | None = None) -> None:
    """`python -m bench.NAME [--scale full|small]`: one module's figures as JSON lines.

    Exits 1 when a figure misses its target."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--scale", choices=("full", "small"), default="full")
    figures = run(parser.parse_args(argv).scale)
    for fig in figures:
        print(json.dumps(fig))
    sys.exit(1 if any(fig.get("met") is False for fig in figures) else 0)
