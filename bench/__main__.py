"""Run every benchmark and write bench/results.json.

    python -m bench [--scale full|small] [--only NAME ...]   (--only updates those figures)

Each benchmark module in this folder exposes `run(scale: str) -> list[dict]`, one dict per figure:
{"name", "value", "unit", "baseline", "ratio", "target"}, the baseline measured in the same run
so that the ratio holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def _fmt(value: object) -> str:
    return f"{value:,.3f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--scale", choices=("full", "small"), default="full")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark module names")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    figures: list[dict] = []
    failed = False
    for name in args.only or _modules():
        started = time.perf_counter()
        print(f"== bench.{name} ({args.scale})", flush=True)
        try:
            results = importlib.import_module(f"bench.{name}").run(args.scale)
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed = True
            continue
        for fig in results:
            fig = {"bench": name, **fig}
            figures.append(fig)
            met = fig.get("met")
            mark = "" if met is None else ("  [met]" if met else "  [MISSED]")
            print(
                f"   {fig['name']}: {_fmt(fig['value'])} {fig.get('unit', '')}"
                f" | baseline {_fmt(fig.get('baseline'))} | ratio {_fmt(fig.get('ratio'))}"
                f" | target {fig.get('target', '-')}{mark}",
                flush=True,
            )
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)

    out = HERE / "results.json"
    if args.only and out.exists():  # a partial run updates its benchmarks' figures, keeps the rest
        previous = json.loads(out.read_text())
        if previous.get("scale") == args.scale:
            kept = [f for f in previous["figures"] if f.get("bench") not in args.only]
            figures = sorted(kept + figures, key=lambda f: f.get("bench", ""))
    out.write_text(json.dumps({"scale": args.scale, "figures": figures}, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
