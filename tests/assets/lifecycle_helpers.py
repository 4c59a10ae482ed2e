"""Helpers shared by the lifecycle asset tests (a plain module: conftest is not importable)."""

from __future__ import annotations

import json
import time

from support.server import ServerHandle

from batch_workflows.dagster import BatchResource

MODEL = "all-MiniLM-L6-v2"


def batch_resource(base_url: str, **settings) -> BatchResource:
    values = {"provider": "local", "base_url": base_url, "start_local_engine": False,
              "poll_interval_seconds": 0.2, "blocking": True}
    values.update(settings)
    return BatchResource(**values)


def embedding_requests(partition: str, n: int, bad: set[int] = frozenset()) -> list[dict]:
    """`n` embedding requests; indexes in `bad` ask for unsupported dimensions (a 400 each)."""
    out = []
    for i in range(n):
        body = {"model": MODEL, "input": f"document {i} of partition {partition}"}
        if i in bad:
            body["dimensions"] = 7
        out.append({"custom_id": f"{partition}-{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": body})
    return out


def occupy(server: ServerHandle, tmp_path, batches: int = 4, requests: int = 3000,
           window: str = "3s") -> list[str]:
    """Fill every batch slot of the server with work that expires after `window`.

    New batches then wait in `validating` until these expire: in-flight states (and expiry of
    short-window batches) become observable without timing luck.
    """
    from batch_workflows.client import BatchClient

    path = tmp_path / "blocker.jsonl"
    with open(path, "w") as fh:
        for i in range(requests):
            line = {"custom_id": f"b{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": {"model": MODEL, "input": f"blocker text number {i}"}}
            fh.write(json.dumps(line) + "\n")
    ids = []
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        # Load the model first: otherwise the blockers' first chunk holds the slots for as long
        # as the load takes, far past their window.
        warm = path.with_name("warm.jsonl")
        warm.write_text(json.dumps({"custom_id": "w", "method": "POST", "url": "/v1/embeddings",
                                    "body": {"model": MODEL, "input": "warm up"}}) + "\n")
        client.wait_batch(client.create_batch(client.upload_file(warm)["id"], "/v1/embeddings")["id"],
                          poll_interval=0.1, timeout=300)
        file_id = client.upload_file(path)["id"]
        for _ in range(batches):
            ids.append(client.create_batch(file_id, "/v1/embeddings", window)["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until they hold the slots
            if all(client.retrieve_batch(b)["status"] != "validating" for b in ids):
                break
            time.sleep(0.05)
    return ids


def wait_terminal(server: ServerHandle, name: str, count: int, timeout: float = 60) -> list[dict]:
    """The `count` lifecycle batches of flow `name` once all are terminal."""
    from batch_workflows import lifecycle as lc
    from batch_workflows.client import BatchClient
    from batch_workflows.wire import is_terminal

    with BatchClient(server.base_url, api_key=server.api_key) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ours = list(lc.iter_lifecycle_batches(client, asset=name))
            if len(ours) == count and all(is_terminal(b) for b in ours):
                return ours
            time.sleep(0.2)
    raise AssertionError("batches did not finish")
