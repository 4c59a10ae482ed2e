"""Batch results: output and error files joined with their requests on ``custom_id``.

    join.py         join_results: the grace hash join, one row per submitted custom_id
    parse.py        request and result files into Arrow rows, a block at a time
    arrow_rows.py   the fast reader: Arrow's JSON reader and kernels over plain blocks
    line_rows.py    the slow reader: one line at a time, naming the line it cannot read
    result_set.py   ResultSet: counts, errors, usage per model, and the rows
    schema.py       the columns, and the four statuses
"""

from batch_workflows.errors import CorruptResultError
from batch_workflows.results.join import join_results
from batch_workflows.results.result_set import ResultSet
from batch_workflows.results.schema import (
    ERRORED,
    FAILED,
    MISSING,
    SCHEMA,
    STATUSES,
    SUCCEEDED,
)

__all__ = [
    "ERRORED", "FAILED", "MISSING", "SCHEMA", "STATUSES", "SUCCEEDED",
    "CorruptResultError", "ResultSet", "join_results",
]
