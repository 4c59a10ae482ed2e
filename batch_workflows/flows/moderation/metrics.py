"""Accuracy of verdicts against labels: flagged vs safe, and per category.

Counted as verdicts stream by (memory does not grow with the items). Only labelled items whose
verdict is ``ok`` are scored; labelled items that are ``unparsed`` or ``failed`` are counted as
``not_scored`` beside the figures (coverage), never guessed into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Confusion:
    """True/false positives and negatives of one yes/no decision."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: bool, actual: bool) -> None:
        if predicted and actual:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif actual:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def fpr(self) -> float | None:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def figures(self) -> dict[str, Any]:
        return {"precision": _round(self.precision), "recall": _round(self.recall),
                "f1": _round(self.f1), "fpr": _round(self.fpr), "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "tn": self.tn, "support": self.support}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Evaluation:
    """Verdicts scored against labels, flagged vs safe and per category."""

    names: Sequence[str]
    flagged: Confusion = field(default_factory=Confusion)
    scored: int = 0
    not_scored: int = 0  # labelled items without an ok verdict
    # per category [tp, fp, fn]; tn follows from `scored` (touching only an item's categories)
    _counts: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._counts = {n: [0, 0, 0] for n in self.names}

    def add(self, predicted: Iterable[str] | None, labels: Iterable[str] | None) -> None:
        """One item: `predicted` None when its verdict is not ok, `labels` None if unlabelled."""
        if labels is None:
            return
        if predicted is None:
            self.not_scored += 1
            return
        got, want = set(predicted), set(labels)
        self.scored += 1
        self.flagged.add(bool(got), bool(want))
        for name in got | want:
            counts = self._counts[name]
            counts[0 if name in got and name in want else 1 if name in got else 2] += 1

    @property
    def per_category(self) -> dict[str, Confusion]:
        return {n: Confusion(tp, fp, fn, self.scored - tp - fp - fn)
                for n, (tp, fp, fn) in self._counts.items()}

    @property
    def labelled(self) -> int:
        return self.scored + self.not_scored

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "not_scored": self.not_scored,
                "flagged_vs_safe": self.flagged.figures(),
                "per_category": {n: c.figures() for n, c in self.per_category.items()},
                "macro_f1": _round(self.macro_f1)}

    @property
    def macro_f1(self) -> float | None:
        """The mean F1 over the categories that have a labelled item or a prediction."""
        values = [c.f1 for c in self.per_category.values() if c.f1 is not None]
        return sum(values) / len(values) if values else None

    def confusion_markdown(self) -> str:
        """The confusion table (flagged vs safe, then each category) as Markdown."""
        rows = [("flagged vs safe", self.flagged)] + list(self.per_category.items())
        head = ("| | support | TP | FP | FN | TN | precision | recall | F1 | FPR |\n"
                "|---|---|---|---|---|---|---|---|---|---|")
        body = [f"| {name} | {c.support} | {c.tp} | {c.fp} | {c.fn} | {c.tn} | "
                f"{_cell(c.precision)} | {_cell(c.recall)} | {_cell(c.f1)} | {_cell(c.fpr)} |"
                for name, c in rows]
        return "\n".join([head, *body])


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
