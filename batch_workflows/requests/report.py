"""What a validation run found: the problems, capped to the earliest lines, and the report."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from batch_workflows.errors import InvalidInputError, Problem


class ProblemLog:
    """The problems of one source, at most `cap` of them: past the cap, the earliest lines.

    Problems may arrive out of line order (duplicates are settled at the end), so an early one
    found late still displaces a later line. `found` counts every problem, kept or not.
    """

    def __init__(self, source: str, cap: int):
        self.source = source
        self.cap = cap
        self.found = 0
        self.truncated = False
        # a max-heap on (line, order): (-line, -order, problem)
        self._heap: list[tuple[int, int, Problem]] = []

    def add(self, line_no: int, fld: str | None, reason: str, code: str | None) -> None:
        self.found += 1
        key = (-line_no, -self.found)
        if len(self._heap) < self.cap:
            heapq.heappush(self._heap, (*key, Problem(self.source, line_no, fld, reason, code)))
            return
        self.truncated = True
        if self._heap and key > self._heap[0][:2]:
            heapq.heapreplace(self._heap, (*key, Problem(self.source, line_no, fld, reason, code)))

    def sorted(self) -> list[Problem]:
        """The problems kept, by line (ties in the order found)."""
        return [item[2] for item in sorted(self._heap, reverse=True)]


@dataclass
class ValidationReport:
    """What one validation run found.

    `lines`: lines read; `requests`: non-blank lines (the requests, when the report is ok);
    `endpoint`/`model`: the file's, from the argument or the first line that names one;
    `problems`: sorted by line, at most the cap; `truncated`: more problems were found.
    """

    source: str
    lines: int
    requests: int
    endpoint: str | None
    model: str | None
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise InvalidInputError carrying every problem found, if there is any."""
        if self.problems:
            raise InvalidInputError(self.problems, self.truncated)

    def summary(self) -> str:
        state = (
            "ok" if self.ok else f"{len(self.problems)}{'+' if self.truncated else ''} problem(s)"
        )
        return (
            f"{self.source}: {state}, {self.requests} request(s) in {self.lines} line(s), "
            f"endpoint {self.endpoint or '-'}, model {self.model or '-'}"
        )
