"""Batch-level failures: read from the batch object, classified by one table, described once.

A provider fails a whole batch at validation with the reason in ``errors.data[]`` (``code``,
``message``, ``param``, ``line``); a batch can also expire with nothing processed or be
cancelled (by someone at the provider, by ``batch-workflows cancel``, or by an interrupted
blocking run). ``DECISIONS`` is the one rule from code to what the lifecycle does:

=================  ===========================================================================
``INPUT``          an input defect (bad line, unknown model, over-long request): the partition
                   stops with the message; nothing is resubmitted
``CAPACITY``       the provider's queue or quota is full: wait with backoff and resubmit the
                   shard without spending an attempt, up to a deadline that is reported
``RESUBMIT``       the ordinary path: unfinished requests go into the next attempt, within
                   ``max_attempts`` and the budget; so do the unrun requests of a batch that
                   expired (``batch_expired``) or was cancelled (``cancelled``), reported with
                   the batch id, its status and counts
``STOP``           nothing to retry here (the account itself: billing, deactivated)
=================  ===========================================================================

A request that failed inside a batch that ran is decided by ``REQUEST_DECISIONS`` (its error
code): requests Anthropic answers ``canceled`` or ``expired`` (``batch_cancelled``,
``batch_expired``) are resubmitted like any unfinished request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

INPUT, CAPACITY, RESUBMIT, STOP = "input", "capacity", "resubmit", "stop"

# Code → decision. OpenAI's validation codes (https://platform.openai.com/docs/guides/batch and
# the codes its API returns in `errors.data[]`), Azure OpenAI's, and this engine's.
DECISIONS: dict[str, str] = {
    # capacity: the quota frees up as earlier batches finish
    "token_limit_exceeded": CAPACITY,  # OpenAI / Azure: enqueued-token quota of the model full
    "rate_limit_exceeded": CAPACITY,
    "too_many_requests": CAPACITY,  # HTTP 429 on create
    "batch_queue_full": CAPACITY,
    "capacity_exceeded": CAPACITY,
    # input defects: resubmitting the same lines fails the same way
    "model_not_found": INPUT,
    "invalid_model": INPUT,
    "invalid_request": INPUT,
    "invalid_json_line": INPUT,
    "invalid_json": INPUT,
    "invalid_value": INPUT,
    "invalid_url": INPUT,
    "invalid_method": INPUT,
    "missing_required_parameter": INPUT,
    "missing_custom_id": INPUT,
    "duplicate_custom_id": INPUT,
    "mismatched_model": INPUT,
    "mismatched_endpoint": INPUT,
    "line_too_long": INPUT,
    "request_too_large": INPUT,
    "context_length_exceeded": INPUT,
    "too_many_requests_in_file": INPUT,
    "file_too_large": INPUT,
    "empty_file": INPUT,
    "too_many_errors": INPUT,
    "unsupported_endpoint": INPUT,
    # nothing to retry here
    "insufficient_quota": STOP,  # billing: waiting does not help
    "billing_hard_limit_reached": STOP,
    "account_deactivated": STOP,
    "input_file_unreadable": STOP,
    # transient on the provider's side: the ordinary resubmission
    "server_error": RESUBMIT,
    "batch_expired": RESUBMIT,
    "cancelled": RESUBMIT,  # its unrun requests go into the next attempt
}
# A `failed` batch with a code not in the table: stop and say so, rather than pay to find out.
UNKNOWN_FAILURE = INPUT

# One request failed, not its batch: the error type of Anthropic's `errored` results
# (https://docs.anthropic.com/en/api/errors), which the results table keeps as `error_code`.
# An invalid request fails again the same way, so it is not resubmitted; the provider's own
# trouble is. A code not listed keeps the ordinary path (resubmitted within the attempts).
REQUEST_DECISIONS: dict[str, str] = {
    "invalid_request_error": INPUT,
    "not_found_error": INPUT,
    "request_too_large": INPUT,
    "authentication_error": STOP,
    "permission_error": STOP,
    "billing_error": STOP,
    "overloaded_error": RESUBMIT,
    "api_error": RESUBMIT,
    "rate_limit_error": RESUBMIT,
    "timeout_error": RESUBMIT,
    # never ran: the batch was cancelled or its window passed (Anthropic's `canceled` /
    # `expired` results, OpenAI's `batch_expired` lines)
    "batch_cancelled": RESUBMIT,
    "batch_expired": RESUBMIT,
}


def resubmits_request(error_code: str | None) -> bool:
    """Whether a request that failed with `error_code` goes into the next attempt."""
    return REQUEST_DECISIONS.get(error_code or "", RESUBMIT) == RESUBMIT


def decide(code: str | None) -> str:
    """The decision for one error code (``UNKNOWN_FAILURE`` for codes not in the table)."""
    return DECISIONS.get(code or "", UNKNOWN_FAILURE)


@dataclass
class BatchFailure:
    """Why a batch ended without running its requests, and what the lifecycle does about it."""

    batch_id: str
    status: str
    decision: str
    code: str
    message: str
    line: int | None = None
    param: str | None = None
    shard: int | None = None

    def describe(self) -> str:
        """One line naming the batch, status, code, message and line (for logs and rows)."""
        where = f" (line {self.line} of shard {self.shard})" if self.line is not None else ""
        if self.line is None and self.shard is not None:
            where = f" (shard {self.shard})"
        param = f" [{self.param}]" if self.param else ""
        return f"batch {self.batch_id} {self.status}{where}: {self.code}: {self.message}{param}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_errors(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The batch's ``errors.data[]`` (an empty list when it has none)."""
    errors = batch.get("errors") or {}
    data = errors.get("data") if isinstance(errors, Mapping) else errors
    return [e for e in data or () if isinstance(e, Mapping)]


def batch_failure(batch: Mapping[str, Any], *, shard: int | None = None) -> BatchFailure | None:
    """The batch-level failure of a terminal batch, or None when its requests ran.

    `failed`: its first error decides (an input defect anywhere wins over capacity, so a file
    that is both too big for the quota and broken stops rather than waits). `expired` with
    nothing processed and `cancelled` are reported too; both resubmit their unrun requests.
    """
    status = str(batch.get("status"))
    bid = str(batch.get("id"))
    counts = batch.get("request_counts") or {}
    processed = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
    if status == "failed":
        errors = batch_errors(batch)
        if not errors:
            return BatchFailure(bid, status, UNKNOWN_FAILURE, "failed",
                                "the provider failed the batch without giving a reason",
                                shard=shard)
        first = min(errors, key=lambda e: decide(e.get("code")) != INPUT)
        return BatchFailure(bid, status, decide(first.get("code")), str(first.get("code")),
                            str(first.get("message") or ""), _line(first.get("line")),
                            first.get("param"), shard)
    if status == "expired" and processed == 0:
        return BatchFailure(bid, status, RESUBMIT, "batch_expired",
                            "the completion window passed before any request ran", shard=shard)
    if status == "cancelled":
        total = int(counts.get("total") or 0)
        return BatchFailure(bid, status, decide("cancelled"), "cancelled",
                            f"cancelled at the provider: {int(counts.get('completed') or 0)} of "
                            f"{total} request(s) completed, {int(counts.get('failed') or 0)} "
                            "failed or not run; those that did not run go into the next "
                            "attempt (within max_attempts)", shard=shard)
    return None


def _line(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
