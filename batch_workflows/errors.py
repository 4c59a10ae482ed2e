"""One exception tree for the engine, modelled on httpx's.

BatchError
├── InvalidInputError        bad request lines: file, 1-based line, field, reason
├── ConfigurationError       bad settings (unknown provider, price table, ...)
├── BudgetExceededError      the pre-submission estimate is above the cap
├── BatchTimeoutError        a wait ran past its deadline
└── ProviderError            the Batch API answered with an error (status, short excerpt)
    ├── AuthenticationError  401/403
    ├── NotFoundError        404
    ├── InvalidRequestError  400/409/413/422: the provider's message
    └── RateLimitError       429 after every retry

Messages never carry an API key: callers pass only status codes and body excerpts.
"""

from __future__ import annotations

import dataclasses
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


class ConfigurationError(BatchError):
    """Settings that cannot work: unknown provider, unreadable price table, ..."""


class BudgetExceededError(BatchError):
    """The estimated cost of a submission is above the configured cap."""


class BatchTimeoutError(BatchError):
    """A wait for batches ran past its deadline."""


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
