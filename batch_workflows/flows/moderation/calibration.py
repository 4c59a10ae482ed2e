"""The embedding strategy's per-category thresholds: fitted on a labelled sample and stored
beside the policy file (``policy.yaml`` → ``policy.calibration.json``), per embedding model,
with the policy version they were fitted for.

A threshold is the one that gives the category its best F1 on the sample (midpoints between
the sample's scores; on a tie, the highest, so fewer false positives). A category without a
labelled item in the sample gets a threshold above any cosine (it is never flagged) and is
listed as such. Thresholds fitted for another version of the policy are refused: the anchors,
and so the scores, have changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.moderation.metrics import Confusion
from batch_workflows.flows.moderation.taxonomy import Policy

NEVER = 1.01  # above any cosine similarity: a category with no labelled example never flags
METHOD = "per-category max F1 on mean cosine to the category's examples"


@dataclass
class Calibration:
    """Thresholds of one embedding model for one version of a policy."""

    model: str
    policy_version: str
    thresholds: dict[str, float]
    sample: dict[str, Any] = field(default_factory=dict)  # what it was fitted on, and figures
    method: str = METHOD

    def vector(self, names: list[str]) -> list[float]:
        missing = [n for n in names if n not in self.thresholds]
        if missing:
            raise ConfigurationError(f"calibration of {self.model}: no threshold for {missing}")
        return [self.thresholds[n] for n in names]


def calibration_path(policy_source: str | Path) -> Path:
    """Where the calibration of a policy file lives: beside it, ``<stem>.calibration.json``."""
    path = Path(policy_source)
    return path.with_name(f"{path.stem}.calibration.json")


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The threshold with the best F1 of ``scores >= t`` against `positive` (highest on a tie)."""
    if not positive.any():
        return NEVER
    values = np.unique(scores)
    cuts = np.concatenate([(values[:-1] + values[1:]) / 2, [values[-1]]])
    best, best_f1 = NEVER, -1.0
    for t in cuts[::-1]:  # from the highest, so a tie keeps the higher threshold
        c = Confusion()
        predicted = scores >= t
        c.tp = int((predicted & positive).sum())
        c.fp = int((predicted & ~positive).sum())
        c.fn = int((~predicted & positive).sum())
        f1 = c.f1 or 0.0
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return round(best, 6)


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """One threshold per category (`scores`, `labels`: items × categories)."""
    return {n: best_threshold(scores[:, k], labels[:, k].astype(bool))
            for k, n in enumerate(names)}


def load_calibration(policy: Policy, model: str) -> Calibration:
    """The stored thresholds of `model` for `policy`; ConfigurationError says how to make them."""
    path = calibration_path(policy.source)
    how = ("run `python -m batch_workflows.flows.moderation.calibrate --policy "
           f"{policy.source} --model {model}` on a labelled backlog")
    if not path.exists():
        raise ConfigurationError(f"no calibration for policy {policy.source} ({path}); {how}")
    data = json.loads(path.read_text())
    entry = data.get("models", {}).get(model)
    if entry is None:
        raise ConfigurationError(f"{path}: no thresholds for model {model!r}; {how}")
    calibration = Calibration(model=model, **entry)
    if calibration.policy_version != policy.version:
        raise ConfigurationError(
            f"{path}: the thresholds of {model!r} were fitted for policy version "
            f"{calibration.policy_version}, the policy is now {policy.version}; {how}")
    return calibration


def store_calibration(policy: Policy, calibration: Calibration) -> Path:
    """Write (or replace) `calibration`'s model entry in the policy's calibration file."""
    path = calibration_path(policy.source)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["policy"] = policy.name
    entry = asdict(calibration)
    entry.pop("model")
    data.setdefault("models", {})[calibration.model] = entry
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
