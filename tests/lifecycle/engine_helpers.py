"""Helpers of the engine-level lifecycle tests (a plain module: conftest is not importable)."""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "all-MiniLM-L6-v2"


def write_requests(path: Path, n: int, prefix: str = "r", text: str = "hello") -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"custom_id": f"{prefix}{i}", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"model": MODEL, "input": f"{text} {i}"}}) + "\n")
    return path
