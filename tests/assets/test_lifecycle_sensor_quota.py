"""Sensor mode under the provider's limits (an enqueued-token quota, the in-flight cap): the
batch run creates the shards that fit and returns; the tracking sensor asks for it again as
batches end, until every shard has its batch; no run waits, no create is refused, nothing is
lost."""

from __future__ import annotations

import time
from pathlib import Path

from dagster import StaticPartitionsDefinition, build_sensor_context, materialize
from lifecycle_helpers import batch_resource
from support.server import start_server

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle
from batch_workflows.pricing import estimate_input_tokens
from batch_workflows.profiles import EMBEDDINGS

LIMIT = 400  # the engine's enqueued-token limit per model, and the resource's
MODEL = "all-MiniLM-L6-v2"
N = 120
PARTS = StaticPartitionsDefinition(["a"])


def _requests(context) -> list[dict]:
    return [{"custom_id": f"q-{i}", "method": "POST", "url": EMBEDDINGS,
             "body": {"model": MODEL, "input": f"a sentence of some forty characters long {i}"}}
            for i in range(N)]


def _run_until_collected(server, flow, store, instance, resources) -> list[str]:
    """Submit partition "a", then tick the sensor and run what it asks for until the results
    are published; checks that nothing was lost or refused. The steps the sensor ran."""
    first = materialize(flow.assets, partition_key="a", instance=instance,
                        resources=resources, selection=[flow.requests, flow.batch])
    assert first.success
    [mat] = first.asset_materializations_for_node(f"{flow.name}_batch")
    pointer = lc.read_pointer(store, flow.name, "a")
    assert 0 < mat.metadata["shards_deferred"].value < len(pointer.shards)  # it returned
    cursor, steps, deadline = None, [], time.monotonic() + 180
    while not store.exists(lc.PartitionLayout(flow.name, "a").results):
        assert time.monotonic() < deadline, steps
        tick = flow.sensor(build_sensor_context(instance=instance, cursor=cursor,
                                                resources=resources))
        cursor = tick.cursor
        for request in tick.run_requests:
            steps.append(request.asset_selection[0].path[-1].removeprefix(f"{flow.name}_"))
            run = materialize(flow.assets, partition_key="a", instance=instance,
                              resources=resources, selection=request.asset_selection,
                              tags=request.tags)
            assert run.success
        time.sleep(0.2)
    summary = lc.read_summary(store, flow.name, "a")
    assert summary.counts == {"succeeded": N} and summary.attempts == 1
    assert not summary.batch_failures
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        ours = list(lc.iter_lifecycle_batches(client, asset=flow.name))
    assert len(ours) == len(pointer.shards)  # one batch per shard: no create was refused
    assert {b["status"] for b in ours} == {"completed"}
    return steps


def test_shards_above_the_token_quota_are_created_by_the_sensor_as_batches_end(
        tmp_path, store, flow_name, instance):
    with start_server(tmp_path / "engine", enqueued_token_limit=LIMIT, organization="org-q",
                      chunk_size=16) as server:
        flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS, _requests)
        resources = {"batch": batch_resource(server.base_url, blocking=False,
                                             enqueued_token_limit=LIMIT),
                     "artifacts": store}
        steps = _run_until_collected(server, flow, store, instance, resources)
    pointer = lc.read_pointer(store, flow_name, "a")
    total = sum(estimate_input_tokens(Path(store.base_uri) / s.artifact)
                for s in pointer.shards)
    assert total > 2 * LIMIT  # three waves at least
    assert "batch" in steps  # the sensor fed the later waves


def test_shards_above_the_in_flight_cap_are_created_by_the_sensor_as_batches_end(
        tmp_path, store, flow_name, instance):
    with start_server(tmp_path / "engine", chunk_size=16) as server:
        flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS, _requests)
        resources = {"batch": batch_resource(server.base_url, blocking=False,
                                             max_in_flight_batches=1, max_requests_per_file=40),
                     "artifacts": store}
        steps = _run_until_collected(server, flow, store, instance, resources)
    assert steps.count("batch") >= 2  # three shards, one in flight at a time
