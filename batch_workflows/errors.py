"""One exception tree for the engine, modelled on httpx's.

BatchError
├── InvalidInputError           bad request lines: file, 1-based line, field, reason
├── CorruptResultError          an output or error line that cannot be read: file, line, reason
├── ConfigurationError          bad settings (unknown provider, price table, a bad number, ...)
│   └── PartitionConflictError  one document id in two partitions of a vector collection
├── BudgetExceededError         the pre-submission estimate is above the cap
├── BatchTimeoutError           a wait ran past its deadline
├── ApiError                    the local server refuses a request (status, message, param, code)
└── ProviderError               the Batch API answered with an error (status, short excerpt)
    ├── AuthenticationError     401/403
    ├── NotFoundError           404
    ├── InvalidRequestError     400/409/413/422: the provider's message
    └── RateLimitError          429 after every retry

`Problem` is one thing wrong with one line (file, 1-based line, field, reason); `ProblemLog`
gathers a source's problems, capped, and raises them as one `InvalidInputError`.
`ProviderError` is what a client sees; `ApiError` is what the local server raises inside its
handlers and renders as OpenAI's error envelope. Messages never carry an API key: callers pass
only status codes and body excerpts.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass


class BatchError(Exception):
    """Base of every error this package raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one request line.

    `code`: a stable machine-readable name of the rule broken (e.g. "duplicate_custom_id"),
    for callers that map problems to API error codes; not part of str() or equality.
    """

    source: str
    line: int
    field: str | None
    reason: str
    code: str | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class ProblemLog:
    """The problems of one source, at most `max_problems` of them: past the cap, the ones on
    the earliest lines. `raise_if_any` turns them into one InvalidInputError.

    Problems may arrive out of line order (request validation settles duplicate ids at the
    end), so an early one found late still displaces a later line. `found` counts every
    problem, kept or not.
    """

    def __init__(self, source: str, max_problems: int = 100):
        self.source = source
        self.max_problems = max_problems
        self.found = 0
        self.truncated = False
        # a max-heap on (line, order): (-line, -order, problem)
        self._heap: list[tuple[int, int, Problem]] = []

    def add(self, line: int, field: str | None, reason: str, code: str | None = None) -> None:
        self.found += 1
        key = (-line, -self.found)
        if len(self._heap) < self.max_problems:
            heapq.heappush(self._heap, (*key, Problem(self.source, line, field, reason, code)))
            return
        self.truncated = True
        if self._heap and key > self._heap[0][:2]:
            heapq.heapreplace(self._heap, (*key, Problem(self.source, line, field, reason, code)))

    @property
    def problems(self) -> list[Problem]:
        """The problems kept, by line (ties in the order found)."""
        return [item[2] for item in sorted(self._heap, reverse=True)]

    def raise_if_any(self) -> None:
        if self._heap:
            raise InvalidInputError(self.problems, self.truncated)


class InvalidInputError(BatchError):
    """Requests that must not be submitted; carries every problem found (capped)."""

    def __init__(self, problems: list[Problem], truncated: bool = False):
        self.problems = list(problems)
        self.truncated = truncated
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  ... and {more} more" if more > 0 else ""
        if truncated:
            tail += "\n  (stopped counting after the cap)"
        super().__init__(f"{len(self.problems)} invalid request line(s):\n{shown}{tail}")


class CorruptResultError(BatchError):
    """A result (output or error) line that cannot be read: file, 1-based line and reason."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(f"corrupt result line: {problem}")


class ConfigurationError(BatchError):
    """Settings that cannot work: unknown provider, unreadable price table, a setting that is
    not a number (e.g. `BATCH_MAX_COST_USD=ten`), ..."""


class PartitionConflictError(ConfigurationError):
    """An upsert would overwrite a point that another partition owns: the same document id
    (hence the same point ids) in two sources."""

    def __init__(self, document_id: str, owner: str, partition: str):
        self.document_id, self.owner, self.partition = document_id, owner, partition
        super().__init__(
            f"document id {document_id!r} is in partition {partition!r} but already indexed "
            f"from partition {owner!r}: point ids derive from document id and chunk index, so "
            "document ids must be unique across the collection. Rename the document in one "
            f"source, or remove it from {owner!r} and re-materialize that partition first (its "
            "points are then deleted as stale)"
        )


class BudgetExceededError(BatchError):
    """The estimated cost of a submission is above the configured cap."""


class BatchTimeoutError(BatchError):
    """A wait for batches ran past its deadline."""


class ApiError(BatchError):
    """The local server refuses a request: raised inside a handler (or the upload parser) and
    rendered as OpenAI's error envelope `{"error": {"message", "type", "param", "code"}}`
    with HTTP `status`."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


class ProviderError(BatchError):
    """The provider answered with an error status."""

    def __init__(self, message: str, status_code: int | None = None, body_excerpt: str = ""):
        self.status_code = status_code
        self.body_excerpt = body_excerpt[:300]
        detail = f" (HTTP {status_code})" if status_code is not None else ""
        excerpt = f": {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(f"{message}{detail}{excerpt}")


class AuthenticationError(ProviderError):
    """The provider refused the credentials (401/403)."""


class NotFoundError(ProviderError):
    """The file or batch does not exist (404)."""


class InvalidRequestError(ProviderError):
    """The provider rejected the request as invalid (400/409/413/422)."""


class RateLimitError(ProviderError):
    """Still rate limited (429) after every retry."""
