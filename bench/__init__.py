"""Benchmarks: each module exposes `run(scale) -> list[dict]`; `python -m bench` runs them all."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_alone(name: str, run: Callable[[str], list[dict]], argv: list[str] | None = None) -> None:
    """`python -m bench.NAME [--scale full|small]`: one module's figures as JSON lines.

    Exits 1 when a figure misses its target."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--scale", choices=("full", "small"), default="full")
    figures = run(parser.parse_args(argv).scale)
    for fig in figures:
        print(json.dumps(fig))
    sys.exit(1 if any(fig.get("met") is False for fig in figures) else 0)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(name: str, *args: object) -> dict:
    """`python -m bench.NAME --child ARGS...` in a fresh process: the JSON its last line prints."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--child", *map(str, args)],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])
