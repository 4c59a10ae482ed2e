"""Batch results: output and error files joined with their requests on ``custom_id``."""

from batch_workflows.results.join import (
    ERRORED,
    FAILED,
    MISSING,
    SCHEMA,
    STATUSES,
    SUCCEEDED,
    CorruptResultError,
    ResultSet,
    join_results,
)

__all__ = [
    "ERRORED", "FAILED", "MISSING", "SCHEMA", "STATUSES", "SUCCEEDED",
    "CorruptResultError", "ResultSet", "join_results",
]
