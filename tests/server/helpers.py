"""Shared helpers for the server tests: request files, waiting, schema checks."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import openai
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parents[1] / "data" / "openai-batch-schemas.json"
EMBED_MODEL = "all-MiniLM-L6-v2"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def write_requests(path: Path, n: int, url: str = "/v1/embeddings", model: str = EMBED_MODEL,
                   prefix: str = "req", repeat: int = 1) -> Path:
    """A valid batch input file of `n` embedding (or chat) requests; `repeat` makes each
    embedding input that many sentences long (slower to run)."""
    with open(path, "w") as handle:
        for i in range(n):
            if url == "/v1/embeddings":
                text = " ".join([f"document number {i} about batches."] * repeat)
                body: dict[str, Any] = {"model": model, "input": text}
            else:
                body = {"model": model, "max_tokens": 4,
                        "messages": [{"role": "user", "content": f"hello {i}"}]}
            line = {"custom_id": f"{prefix}-{i}", "method": "POST", "url": url, "body": body}
            handle.write(json.dumps(line) + "\n")
    return path


def wait_for(client: openai.OpenAI, batch_id: str, timeout: float = 180.0,
             statuses: set[str] = TERMINAL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout}s")
        time.sleep(0.2)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    text = client.files.content(file_id).read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@cache
def _schemas() -> tuple[dict[str, Any], Registry]:
    doc = json.loads(SCHEMAS.read_text())
    return doc, Registry().with_resource(doc["$id"], Resource.from_contents(doc))


def assert_schema(obj: Any, name: str) -> None:
    """Validate a JSON body against one of OpenAI's published component schemas."""
    doc, registry = _schemas()
    schema = {"$ref": f"{doc['$id']}#/$defs/{name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(obj)
