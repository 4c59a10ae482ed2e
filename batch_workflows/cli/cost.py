"""`batch-workflows cost RESULTS.parquet... [--prices FILE]`: what the tokens cost at the batch rate.

Reads the usage per model from results files written by `join` (or the collect step), prices it
with the price table (default: the one shipped in batch_workflows/data/prices.csv) at the batch
rate — 50 % of the base price, rounded up to the cent — and prints tokens and USD per model and
in total, beside the base (real-time) cost. Exit 0; 1 when a model has no price or a file cannot
be read; 2 usage error, a file that does not exist.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal

from batch_workflows.cli.validate import unreadable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="tokens and USD per model at the batch rate, from results Parquet files",
        description=__doc__.split("\n", 1)[0],
    )
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="results Parquet file(s)")
    parser.add_argument(
        "--prices", default=None, metavar="FILE",
        help="price CSV: model,input_usd_per_million,output_usd_per_million (base prices)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def money(value: Decimal) -> str:
    """USD to the micro-dollar: small jobs cost fractions of a cent."""
    return f"${value.quantize(Decimal('0.000001'))}"


def run(args: argparse.Namespace) -> int:
    from batch_workflows.pricing import PriceTable, cost_of_results
    from batch_workflows.results import ResultSet

    for path in args.results + ([args.prices] if args.prices else []):
        why = unreadable(path)
        if why:
            print(f"batch-workflows cost: error: {path}: {why}", file=sys.stderr)
            return 2
    table = PriceTable.load(args.prices) if args.prices else PriceTable.default()
    sets = [ResultSet.from_parquet(p) for p in args.results]
    report = cost_of_results(sets, table, batch=True)
    base = cost_of_results(sets, table, batch=False)
    print(f"prices: {table.source} (batch rate = 50 % of base, rounded up to the cent)")
    header = ("model", "requests", "prompt_tokens", "completion_tokens", "batch_usd", "base_usd")
    rows = [
        (m.model, str(m.requests), str(m.prompt_tokens), str(m.completion_tokens), money(m.usd),
         money(b.usd))
        for m, b in zip(report.models, base.models, strict=True)
    ]  # fmt: skip
    rows.append(("total", str(sum(m.requests for m in report.models)), str(report.prompt_tokens),
                 str(report.completion_tokens), money(report.usd), money(base.usd)))  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return 0
