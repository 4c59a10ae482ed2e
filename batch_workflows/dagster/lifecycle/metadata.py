"""Asset metadata from the lifecycle's plain results (the only place MetadataValues are made)."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from batch_workflows.lifecycle import Collected, Observation, RequestPointer, Submitted, Summary

STATUSES = ("succeeded", "failed", "errored", "missing")


def combined_metadata(per_key: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    """One partition's metadata as it is; several (a range run): the numbers summed, and each
    partition's plain values under ``by_partition``."""
    if len(per_key) == 1:
        return per_key[0][1]
    plain = {str(k): {n: v for n, v in m.items() if isinstance(v, int | float | str | bool)}
             for k, m in per_key}
    sums: dict[str, Any] = {}
    for _, m in per_key:
        for n, v in m.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                sums[n] = sums.get(n, 0) + v
    return {"partitions": len(per_key), **sums, "by_partition": MetadataValue.json(plain)}


def requests_metadata(pointer: RequestPointer, uri: str) -> dict[str, Any]:
    return {
        "submission_key": pointer.key,
        "content_hash": pointer.content_hash,
        "requests": pointer.total_requests,
        "shards": len(pointer.shards),
        "bytes": pointer.total_bytes,
        "model": pointer.model or "",
        "manifest": MetadataValue.path(uri),
    }


def batch_metadata(submitted: Submitted, provider: str) -> dict[str, Any]:
    manifest = submitted.manifest
    metadata: dict[str, Any] = {
        "submission_key": manifest.key,
        "batch_ids": MetadataValue.json(manifest.batch_ids),
        "file_ids": MetadataValue.json(manifest.file_ids),
        "request_counts": MetadataValue.json(manifest.request_counts),
        "requests": manifest.total_requests,
        "batches_created": manifest.created,
        "shards_deferred": submitted.deferred,  # waiting for room under the quota
        "reattached": manifest.reattached,
        "superseded_cancelled": MetadataValue.json([b.get("id") for b in submitted.superseded]),
        "provider": provider,
        "manifest": MetadataValue.path(submitted.uri),
    }
    if submitted.estimate_usd is not None:
        metadata["estimated_cost_usd"] = float(submitted.estimate_usd)
    return metadata


def results_metadata(collected: Collected) -> dict[str, Any]:
    summary = collected.summary
    metadata: dict[str, Any] = {
        "path": MetadataValue.path(collected.results_uri),
        "submission_key": summary.submission_key,
        "rows": summary.rows,
        "error_rate": summary.error_rate,
        "attempts": summary.attempts,
        "error_breakdown": MetadataValue.json(summary.error_breakdown),
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "total_tokens": summary.total_tokens,
        "unexpected": summary.unexpected,
        "duplicates": summary.duplicates,
    }
    for status in STATUSES:
        metadata[status] = summary.counts.get(status, 0)
    if summary.cost_usd is not None:
        metadata["cost_usd_batch_rate"] = float(summary.cost_usd)
    if summary.time_to_complete_seconds is not None:
        metadata["time_to_complete_seconds"] = summary.time_to_complete_seconds
    if summary.batch_failures:  # batches failed as a whole: batch, code, message, line
        metadata["batch_failures"] = MetadataValue.json(summary.batch_failures)
    if collected.unfinished_sample:
        rows = "\n".join(
            f"| {r['custom_id']} | {r['status']} | {r['error_code'] or ''} | "
            f"{(r['error_message'] or '')[:80].replace('|', '/')} |"
            for r in collected.unfinished_sample)
        metadata["unfinished_sample"] = MetadataValue.md(
            "| custom_id | status | error | message |\n|---|---|---|---|\n" + rows)
    return metadata


def observation_metadata(observation: Observation) -> dict[str, Any]:
    p = observation.progress
    return {
        "submission_key": observation.submission_key,
        "attempt": observation.attempt,
        "batches": observation.batches,
        "statuses": MetadataValue.json(p.statuses),
        "total": p.total,
        "completed": p.completed,
        "failed": p.failed,
        "terminal": p.terminal,
    }


def accounted_metadata(summary: Summary) -> dict[str, Any]:
    return {
        "submitted": summary.submitted,
        "rows": summary.rows,
        "unexpected": summary.unexpected,
        "duplicates": summary.duplicates,
        "unexpected_sample": MetadataValue.json(summary.unexpected_sample),
    }


def error_rate_metadata(summary: Summary, threshold: float) -> dict[str, Any]:
    return {
        "error_rate": summary.error_rate,
        "threshold": threshold,
        "unfinished": summary.unfinished,
        "error_breakdown": MetadataValue.json(summary.error_breakdown),
    }
