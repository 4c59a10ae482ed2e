"""The columns of joined results: the Parquet file's, and the rows parsing hands to the join."""

from __future__ import annotations

import pyarrow as pa

SUCCEEDED, FAILED, ERRORED, MISSING = "succeeded", "failed", "errored", "missing"
STATUSES = (SUCCEEDED, FAILED, ERRORED, MISSING)
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens")

# The Parquet file's columns, one row per submitted request: its status and HTTP status code,
# the error code and message of a failure, the model that answered, the first choice's
# `content` and `finish_reason` for chat, and token usage. `embedding` holds the vector when
# the response holds exactly one; `embeddings` holds all of them (in `index` order) when it
# holds more.
SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("status", pa.string()),
        ("status_code", pa.int32()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("model", pa.string()),
        ("content", pa.string()),
        ("finish_reason", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("embeddings", pa.list_(pa.list_(pa.float32()))),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
    ]
)
# One parsed result line: the Parquet columns, with `rank` (0 succeeded, 1 failed, 2 errored;
# also the preference among duplicates) in place of `status`.
_KEYS = ("custom_id", "status")
RESULT_ROW_SCHEMA = pa.schema(
    [("custom_id", pa.string()), ("rank", pa.int8())] + [f for f in SCHEMA if f.name not in _KEYS]
)
STATUS_BY_RANK = pa.array([SUCCEEDED, FAILED, ERRORED])
# One parsed request line: its id, and its model (to label a request that got no answer).
REQUEST_ROW_SCHEMA = pa.schema([("custom_id", pa.string()), ("model", pa.string())])
