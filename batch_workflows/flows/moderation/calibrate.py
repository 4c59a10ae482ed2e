"""Fit the embedding strategy's per-category thresholds on a labelled backlog and store them
beside the policy (``<policy>.calibration.json``).

    python -m batch_workflows.flows.moderation.calibrate                 # shipped policy + sample
    python -m batch_workflows.flows.moderation.calibrate --policy my.yaml --backlog DIR --model M

The backlog's items and the policy's anchors are embedded through the batch lifecycle (the
same requests the flow sends), so the thresholds fit exactly the scores the flow computes.
Beside the fitted thresholds it reports an honest estimate for unseen content: leave-one-day-
out (thresholds fitted on the other days, applied to the day left out), since the figures on
the sample the thresholds were fitted to flatter them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from batch_workflows.flows.moderation.calibration import (
    Calibration,
    fit_thresholds,
    store_calibration,
)
from batch_workflows.flows.moderation.evaluate import (
    SAMPLE_BACKLOG,
    judge_backlog,
    lifecycle_policy,
    open_client,
)
from batch_workflows.flows.moderation.judges import EmbeddingJudge
from batch_workflows.flows.moderation.metrics import Evaluation
from batch_workflows.flows.moderation.settings import ModerationSettings
from batch_workflows.flows.moderation.taxonomy import Policy, load_policy
from batch_workflows.parquet import open_parquet
from batch_workflows.results import SUCCEEDED


@dataclass
class SampleScores:
    """Every labelled item's category scores, labels and day."""

    scores: np.ndarray  # items × categories
    labels: np.ndarray  # items × categories, bool
    days: np.ndarray


def sample_scores(client: Any, policy: Policy, model: str, backlog: str,
                  work_dir: str) -> SampleScores:
    """Embed the backlog and the anchors through the lifecycle and score every labelled item."""
    judge = EmbeddingJudge(policy, model)
    done = judge_backlog(client, judge, backlog, work_dir, lifecycle_policy())
    judge.prepare(done.results_path)
    if judge.scorer is None:
        raise RuntimeError(judge.anchor_failure or "no anchors")
    items = open_parquet(done.items_path).read(columns=["custom_id", "labels"]).to_pylist()
    vectors: dict[str, list[float]] = {}
    for batch in open_parquet(done.results_path).iter_batches(
            columns=["custom_id", "status", "embedding"]):
        for row in batch.to_pylist():
            if row["status"] == SUCCEEDED and row["embedding"]:
                vectors[row["custom_id"]] = row["embedding"]
    keep = [i for i, it in enumerate(items)
            if it["labels"] is not None and it["custom_id"] in vectors]
    names = policy.names
    scores = judge.scorer.scores(np.asarray([vectors[items[i]["custom_id"]] for i in keep]))
    labels = np.array([[n in items[i]["labels"] for n in names] for i in keep], dtype=bool)
    return SampleScores(scores, labels, np.array(done.days)[keep])


def evaluation_of(predicted: np.ndarray, labels: np.ndarray, names: list[str]) -> Evaluation:
    ev = Evaluation(names)
    for row, want in zip(predicted, labels, strict=True):
        ev.add([n for n, p in zip(names, row, strict=True) if p],
               [n for n, w in zip(names, want, strict=True) if w])
    return ev


def leave_one_day_out(sample: SampleScores, names: list[str]) -> Evaluation:
    """Each day judged with thresholds fitted on the other days."""
    predicted = np.zeros_like(sample.labels)
    for day in np.unique(sample.days):
        train = sample.days != day
        th = fit_thresholds(sample.scores[train], sample.labels[train], names)
        predicted[~train] = sample.scores[~train] >= np.array([th[n] for n in names])
    return evaluation_of(predicted, sample.labels, names)


def calibrate(client: Any, policy: Policy, model: str, backlog: str, work_dir: str) -> Calibration:
    sample = sample_scores(client, policy, model, backlog, work_dir)
    names = policy.names
    thresholds = fit_thresholds(sample.scores, sample.labels, names)
    fitted = evaluation_of(sample.scores >= np.array([thresholds[n] for n in names]),
                           sample.labels, names)
    held_out = leave_one_day_out(sample, names)
    return Calibration(model=model, policy_version=policy.version, thresholds=thresholds, sample={
        "backlog": backlog if backlog != str(SAMPLE_BACKLOG) else "shipped sample",
        "items": int(len(sample.labels)), "days": sorted(set(sample.days.tolist())),
        "positives": {n: int(sample.labels[:, k].sum()) for k, n in enumerate(names)},
        "fitted": _headline(fitted), "leave_one_day_out": _headline(held_out)})


def _headline(ev: Evaluation) -> dict[str, Any]:
    return {"flagged_vs_safe": ev.flagged.figures(), "macro_f1": round(ev.macro_f1 or 0, 4)}


def main(argv: list[str] | None = None) -> int:
    settings = ModerationSettings.from_env()
    parser = argparse.ArgumentParser(prog="python -m batch_workflows.flows.moderation.calibrate")
    parser.add_argument("--policy", default=settings.policy_file, help="default: the shipped one")
    parser.add_argument("--backlog", default=str(SAMPLE_BACKLOG), help="a folder of day files")
    parser.add_argument("--model", default=settings.embedding_model)
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    with tempfile.TemporaryDirectory(prefix="bw-moderation-cal-") as tmp, open_client() as client:
        calibration = calibrate(client, policy, args.model, args.backlog, tmp)
    path = store_calibration(policy, calibration)
    for split in ("fitted", "leave_one_day_out"):
        f = calibration.sample[split]["flagged_vs_safe"]
        print(f"{split}: flagged vs safe P {f['precision']} R {f['recall']} F1 {f['f1']} "
              f"FPR {f['fpr']}; macro F1 {calibration.sample[split]['macro_f1']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
