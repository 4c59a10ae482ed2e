"""Anthropic's MessageBatch and result lines in the OpenAI shapes the lifecycle reads.

Statuses: ``in_progress`` → ``in_progress``; ``canceling`` → ``cancelling``; ``ended`` →
``cancelled`` when a cancel stopped requests, else ``expired`` when requests expired, else
``completed``. Results: ``succeeded`` → an output line (a chat completion); ``errored`` → an
error line with the HTTP status of its error type, which the failure table reads by type;
``canceled`` / ``expired`` → error lines ``batch_cancelled`` / ``batch_expired`` (resubmitted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from batch_workflows.anthropic_batches.wire import ERROR_STATUS, message_to_completion
from batch_workflows.profiles import CHAT

OUTPUT, ERRORS = "output", "errors"


def epoch(value: Any) -> int | None:
    """An RFC 3339 time (Anthropic's) as unix seconds."""
    if not value:
        return None
    return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def file_id(batch_id: str, kind: str) -> str:
    """The id under which the lifecycle downloads one half of a batch's results."""
    return f"{batch_id}:{kind}"


def split_file_id(value: str) -> tuple[str, str] | None:
    batch_id, _, kind = value.rpartition(":")
    return (batch_id, kind) if batch_id and kind in (OUTPUT, ERRORS) else None


def to_openai_batch(batch: Mapping[str, Any], metadata: Mapping[str, str] | None,
                    input_file_id: str | None = None) -> dict[str, Any]:
    counts = batch.get("request_counts") or {}
    n = {k: int(counts.get(k) or 0) for k in
         ("processing", "succeeded", "errored", "canceled", "expired")}
    processing = batch.get("processing_status")
    if processing == "ended":
        if batch.get("cancel_initiated_at") and n["canceled"]:
            status = "cancelled"  # a cancel that came after every request ran stopped nothing
        elif n["expired"]:
            status = "expired"
        else:
            status = "completed"
    else:
        status = "cancelling" if processing == "canceling" else "in_progress"
    bid = str(batch["id"])
    out: dict[str, Any] = {
        "id": bid,
        "object": "batch",
        "endpoint": CHAT,
        "input_file_id": input_file_id,
        "completion_window": "24h",
        "status": status,
        "created_at": epoch(batch.get("created_at")),
        "expires_at": epoch(batch.get("expires_at")),
        "request_counts": {"total": sum(n.values()), "completed": n["succeeded"],
                           "failed": n["errored"] + n["canceled"] + n["expired"]},
        "metadata": dict(metadata) if metadata is not None else None,
        "errors": None,
        "anthropic_request_counts": n,
    }
    ended = epoch(batch.get("ended_at"))
    if ended is not None:
        out[{"cancelled": "cancelled_at", "expired": "expired_at"}.get(status,
                                                                     "completed_at")] = ended
    if batch.get("cancel_initiated_at"):
        out["cancelling_at"] = epoch(batch["cancel_initiated_at"])
    if processing == "ended":
        if n["succeeded"]:
            out["output_file_id"] = file_id(bid, OUTPUT)
        if n["errored"] + n["canceled"] + n["expired"]:
            out["error_file_id"] = file_id(bid, ERRORS)
    return out


def to_openai_line(line: Mapping[str, Any], original_id: str) -> tuple[str, dict[str, Any]]:
    """(``output`` or ``errors``, the OpenAI batch output line) for one Anthropic result line."""
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        message = result.get("message") or {}
        return OUTPUT, {"id": message.get("id"), "custom_id": original_id, "error": None,
                        "response": {"status_code": 200, "request_id": message.get("id"),
                                     "body": message_to_completion(message)}}
    if kind == "errored":
        envelope = result.get("error") or {}
        err = envelope.get("error") or {}
        etype = str(err.get("type") or "api_error")
        body = {"error": {"type": etype, "code": etype, "message": err.get("message")}}
        return ERRORS, {"id": None, "custom_id": original_id, "error": None,
                        "response": {"status_code": ERROR_STATUS.get(etype, 500),
                                     "request_id": envelope.get("request_id"), "body": body}}
    code = {"canceled": "batch_cancelled", "expired": "batch_expired"}.get(str(kind),
                                                                          "unknown_result")
    return ERRORS, {"id": None, "custom_id": original_id, "response": None,
                    "error": {"code": code, "message": f"Anthropic result type {kind!r}"}}
