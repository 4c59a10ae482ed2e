"""A labelled backlog judged end to end without Dagster: its items through the batch lifecycle
(``run_to_completion``: validate, submit, wait, collect, resubmit) and into verdicts, with the
figures against the labels beside the keyword baseline's.

    python -m batch_workflows.flows.moderation.evaluate --strategy embedding   # shipped sample
    python -m batch_workflows.flows.moderation.evaluate --strategy llm --backlog DIR --json

It talks to ``BATCH_BASE_URL`` (default: the local engine at http://127.0.0.1:8765/v1, started
with ``batch-workflows serve``). All days of the backlog go in one submission.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_workflows.client import BatchClient
from batch_workflows.flows.moderation.backlog import Item, backlog_files, day_of, read_backlog
from batch_workflows.flows.moderation.items import ItemTableWriter
from batch_workflows.flows.moderation.judges import STRATEGIES, Judge
from batch_workflows.flows.moderation.requests import day_requests
from batch_workflows.flows.moderation.settings import ModerationSettings
from batch_workflows.flows.moderation.taxonomy import DEFAULT_POLICY_FILE, Policy
from batch_workflows.flows.moderation.verdicts import VerdictReport, write_verdicts
from batch_workflows.lifecycle import Policy as LifecyclePolicy
from batch_workflows.lifecycle import run_to_completion
from batch_workflows.pricing import PriceTable
from batch_workflows.profiles import get_profile

SAMPLE_BACKLOG = DEFAULT_POLICY_FILE.parent / "backlog"
LOCAL_URL = "http://127.0.0.1:8765/v1"


@dataclass
class JudgedBacklog:
    """A backlog's items run through a judge: where its files are, each item's day."""

    items_path: Path
    results_path: Path
    days: list[str]  # the day of each item, in item-table order


def labelled_items(backlog: str | Path, policy: Policy) -> Iterator[tuple[str, Item]]:
    """(day, item) of every day file of a backlog folder, day by day."""
    for f in backlog_files(str(backlog)):
        day = day_of(f.name) or ""
        for item in read_backlog(f.uri, policy.names):
            yield day, item


def judge_backlog(client: Any, judge: Judge, backlog: str | Path, work_dir: str | Path,
                  lifecycle: LifecyclePolicy) -> JudgedBacklog:
    """Build, submit and collect the requests of every item of `backlog` (blocking)."""
    work = Path(work_dir)
    table = ItemTableWriter(work / "items.parquet")
    days: list[str] = []

    def items() -> Iterator[Item]:
        for day, item in labelled_items(backlog, judge.policy):
            days.append(day)
            yield item

    try:
        outcome = run_to_completion(
            client, day_requests(items(), table, judge), work / "lifecycle",
            name=f"moderation-{judge.strategy}", endpoint=judge.endpoint, policy=lifecycle,
            params=judge.params())
    finally:
        table.close()
    return JudgedBacklog(table.path, Path(outcome.results_path), days)


def evaluate(client: Any, judge: Judge, backlog: str | Path, work_dir: str | Path,
             lifecycle: LifecyclePolicy) -> VerdictReport:
    """The verdicts of every item of `backlog`, and their figures against its labels."""
    done = judge_backlog(client, judge, backlog, work_dir, lifecycle)
    work = Path(work_dir)
    return write_verdicts(done.items_path, done.results_path, judge,
                          work / "verdicts.parquet", work / "flagged.parquet")


def lifecycle_policy(provider: str | None = None) -> LifecyclePolicy:
    return LifecyclePolicy(get_profile(provider or os.environ.get("BATCH_PROVIDER") or "local"),
                           max_attempts=3, poll_interval=0.5, prices=PriceTable.default())


def open_client() -> BatchClient:
    return BatchClient(os.environ.get("BATCH_BASE_URL") or LOCAL_URL,
                       api_key=os.environ.get("BATCH_API_KEY"))


def summary_lines(report: VerdictReport) -> list[str]:
    """A short human-readable account of a report."""
    d = report.to_dict()
    lines = [f"{report.strategy} ({report.model}): {d['items']} items, {d['ok']} ok, "
             f"{d['unparsed']} unparsed, {d['failed']} failed, flagged {d['flagged']}"]
    for name, ev in (("strategy", report.evaluation),
                     ("keyword baseline", report.keyword_baseline)):
        if ev is not None:
            f = ev.flagged
            lines.append(f"  {name}: flagged vs safe P {f.precision or 0:.3f} "
                         f"R {f.recall or 0:.3f} F1 {f.f1 or 0:.3f} FPR {f.fpr or 0:.3f}; "
                         f"macro F1 over categories {ev.macro_f1 or 0:.3f} "
                         f"({ev.scored} scored, {ev.not_scored} not)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch_workflows.flows.moderation.evaluate")
    parser.add_argument("--strategy", choices=STRATEGIES, required=True)
    parser.add_argument("--backlog", default=str(SAMPLE_BACKLOG), help="a folder of day files")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    settings = ModerationSettings.from_env()
    settings = ModerationSettings(**{**settings.__dict__, "strategy": args.strategy})
    policy = settings.policy()
    judge = settings.judge(policy, calibrated=True)
    with tempfile.TemporaryDirectory(prefix="bw-moderation-eval-") as tmp, open_client() as client:
        report = evaluate(client, judge, args.backlog, tmp, lifecycle_policy())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(summary_lines(report)))
        if report.evaluation is not None:
            print(report.evaluation.confusion_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
