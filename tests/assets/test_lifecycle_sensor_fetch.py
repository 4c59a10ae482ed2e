"""Sensor mode stores each batch's files as soon as that batch ends, not when the slowest ends."""

from __future__ import annotations

import time
from pathlib import Path

from dagster import StaticPartitionsDefinition, build_sensor_context, materialize
from lifecycle_helpers import batch_resource, embedding_requests, wait_terminal

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle, results_key
from batch_workflows.dagster.lifecycle.sensor import FETCH_TAG
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.wire import is_terminal

PARTS = StaticPartitionsDefinition(["a"])
BIG = 1200  # shard 0: long enough to be running when shard 1 (one request) has ended


def _ended_and_running(server, name, timeout=60.0):
    """The flow's batches once the small shard has ended while the big one still runs."""
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = {int(b["metadata"][lc.META_SHARD]): b
                       for b in lc.iter_lifecycle_batches(client, asset=name)}
            if len(batches) == 2 and is_terminal(batches[1]):
                assert not is_terminal(batches[0]), "shard 0 ended before the test looked"
                return batches
            time.sleep(0.05)
    raise AssertionError("the small shard did not end")


def test_ended_batches_are_stored_while_others_run(server, store, flow_name, instance,
                                                   tmp_path):
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests("a", BIG + 1))
    resources = {"batch": batch_resource(server.base_url, blocking=False,
                                         max_requests_per_file=BIG),
                 "artifacts": store}
    submitted = materialize(flow.assets, partition_key="a", instance=instance,
                            resources=resources, selection=[flow.requests, flow.batch])
    assert submitted.success
    batches = _ended_and_running(server, flow_name)

    def tick(cursor):
        return flow.sensor(build_sensor_context(instance=instance, cursor=cursor,
                                                resources=resources))

    first = tick(None)
    (request,) = first.run_requests  # not the final results run: a fetching one
    assert request.tags[FETCH_TAG] == "ended-1"
    assert request.partition_key == "a" and request.asset_selection == [flow.results.key]
    assert tick(first.cursor).run_requests == []  # nothing more has ended: no second run

    run = materialize(flow.assets, partition_key="a", instance=instance, resources=resources,
                      selection=request.asset_selection, tags=request.tags)
    assert run.success
    assert run.asset_materializations_for_node(f"{flow_name}_results") == []
    pointer = lc.read_pointer(store, flow_name, "a")
    alayout = lc.PartitionLayout(flow_name, "a").attempt(pointer.key, 1)
    small = alayout.raw("shard-00001-output.jsonl")
    assert store.exists(small)  # the ended batch's output, in the store already
    assert not store.exists(alayout.raw("shard-00000-output.jsonl"))
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        client.download_file(batches[1]["output_file_id"], tmp_path / "small.jsonl")
    assert store.read_bytes(small) == (tmp_path / "small.jsonl").read_bytes()
    stored_at = (Path(store.base_uri) / small).stat().st_mtime_ns

    wait_terminal(server, flow_name, 2)
    last = tick(first.cursor)
    (final,) = last.run_requests
    assert FETCH_TAG not in final.tags
    run = materialize(flow.assets, partition_key="a", instance=instance, resources=resources,
                      selection=final.asset_selection)
    assert run.success
    summary = lc.read_summary(store, flow_name, "a")
    assert summary.counts == {"succeeded": BIG + 1}
    assert store.exists(results_key(flow_name, "a"))
    assert (Path(store.base_uri) / small).stat().st_mtime_ns == stored_at  # not downloaded again
