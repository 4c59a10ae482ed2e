"""Request files: validation before anything is paid for, and sharding within provider limits.

    lines.py        JSONL bytes into numbered lines; reading a request file back
    validate.py     RequestValidator: every rule for a line, reported as FILE:LINE: FIELD: REASON
    fast_check.py   the cheap yes for a line that is completely fine
    body_rules.py   the rules for a body that depend on its endpoint (chat, embeddings)
    duplicates.py   which lines share a custom_id, in flat memory
    report.py       ValidationReport: what one run found
    shards.py       write_shards: validated JSONL files within the per-file limits
    manifest.py     what write_shards wrote (Shard, ShardManifest)
    dataframe.py    requests built from DataFrame rows
"""

from batch_workflows.requests.dataframe import requests_from_dataframe
from batch_workflows.requests.lines import iter_requests
from batch_workflows.requests.manifest import Shard, ShardManifest
from batch_workflows.requests.report import ValidationReport
from batch_workflows.requests.shards import write_shards
from batch_workflows.requests.validate import RequestValidator, validate_file, validate_requests

__all__ = [
    "RequestValidator",
    "Shard",
    "ShardManifest",
    "ValidationReport",
    "iter_requests",
    "requests_from_dataframe",
    "validate_file",
    "validate_requests",
    "write_shards",
]
