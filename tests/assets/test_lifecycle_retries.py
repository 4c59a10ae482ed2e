"""Failed and expired requests are resubmitted, exactly those, up to max_attempts."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import batch_resource, embedding_requests, occupy

from batch_workflows.dagster import batch_lifecycle, partition_dir, results_key
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.requests import iter_requests

PARTS = StaticPartitionsDefinition(["x"])


def _attempt_requests(store, name, part, tmp_path):
    """custom_ids submitted in each attempt, read back from the stored shards."""
    folder = partition_dir(name, part)
    out: dict[int, set[str]] = {}
    for key in store.list(folder + "/"):
        segments = key.split("/")
        if "requests" not in segments or not key.endswith(".jsonl"):
            continue
        attempt = 1
        if segments[-3].startswith("attempt-"):
            attempt = int(segments[-3].split("-")[1])
        local = store.get_file(key, tmp_path / "shards" / key.replace("/", "_"))
        out.setdefault(attempt, set()).update(r["custom_id"] for r in iter_requests(local))
    return out


def _statuses(store, name, part, attempt):
    key = f"{partition_dir(name, part)}/"
    path = [k for k in store.list(key) if k.endswith(f"attempt-{attempt}/results.parquet")][0]
    rows = pq.read_table(store.uri(path), columns=["custom_id", "status"]).to_pylist()
    return {r["custom_id"]: r["status"] for r in rows}


def test_partial_failure_resubmits_exactly_the_failed(server, store, flow_name, instance, tmp_path):
    bad = {1, 3}
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 6, bad))
    resources = {"batch": batch_resource(server.base_url, max_attempts=2), "artifacts": store}
    result = materialize([*flow.assets, *flow.checks], partition_key="x", instance=instance,
                         resources=resources)
    assert result.success
    submitted = _attempt_requests(store, flow_name, "x", tmp_path)
    assert submitted[1] == {f"x-{i}" for i in range(6)}
    assert submitted[2] == {"x-1", "x-3"}  # exactly the failed ones
    meta = result.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
    assert meta["attempts"].value == 2
    assert meta["succeeded"].value == 4 and meta["failed"].value == 2
    assert "unsupported_parameter" in meta["error_breakdown"].value
    assert "x-1" in meta["unfinished_sample"].value
    final = pq.read_table(store.uri(results_key(flow_name, "x"))).to_pylist()
    assert sorted(r["custom_id"] for r in final) == sorted(f"x-{i}" for i in range(6))
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"all_requests_accounted": True, "error_rate": False}


def test_expired_requests_are_resubmitted_until_done(server, store, flow_name, instance, tmp_path):
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 5))
    batch = batch_resource(server.base_url, completion_window="1s", max_attempts=8)
    occupy(server, tmp_path)  # our first attempt waits in the queue past its 1 s window
    result = materialize(flow.assets, partition_key="x", instance=instance,
                         resources={"batch": batch, "artifacts": store})
    assert result.success
    meta = result.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
    attempts = meta["attempts"].value
    assert attempts >= 2
    assert meta["succeeded"].value == 5
    first = _statuses(store, flow_name, "x", 1)
    assert len(first) == 5  # one row per request: the check below is not on an empty set
    assert set(first.values()) <= {"errored", "missing"}  # never ran: batch_expired or no line
    submitted = _attempt_requests(store, flow_name, "x", tmp_path)
    for n in range(2, attempts + 1):
        previous = _statuses(store, flow_name, "x", n - 1)
        assert submitted[n] == {cid for cid, s in previous.items() if s != "succeeded"}
    summary = json.loads(store.read_bytes(f"{flow_name}/x/summary.json"))
    assert summary["counts"] == {"succeeded": 5}
