"""What a validation run found: `ValidationReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from batch_workflows.errors import InvalidInputError, Problem


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
