"""Token statistics of the kept examples, exact and in flat memory: a histogram of counts by
token count (its size is the largest count seen, not the number of examples)."""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTILES = (5, 50, 95)


class TokenHistogram:
    """How many examples have each token count."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, np.int64)
        self.total = 0  # sum of the token counts
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.int64)
        if not len(values):
            return
        binned = np.bincount(values)
        if len(binned) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(binned) - len(self.counts)))
        self.counts[: len(binned)] += binned
        self.total += int(values.sum())
        self.n += len(values)

    def percentile(self, p: float) -> int | None:
        """The smallest token count with at least p % of the examples at or below it."""
        if not self.n:
            return None
        rank = max(1, int(np.ceil(p / 100 * self.n)))
        return int(np.searchsorted(np.cumsum(self.counts), rank))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"p{p}": self.percentile(p) for p in PERCENTILES}
        out.update(total=self.total, mean=round(self.total / self.n, 1) if self.n else None,
                   max=int(np.flatnonzero(self.counts).max()) if self.n else None)
        return out
