"""Non-blocking mode: submission returns at once, the sensor drives collection."""

from __future__ import annotations

import time

from dagster import AssetKey, StaticPartitionsDefinition, build_sensor_context, materialize
from lifecycle_helpers import batch_resource, embedding_requests, occupy

from assets.lifecycle import batch_lifecycle, results_key
from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["a", "b"])


def _flow(name):
    return batch_lifecycle(name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 4))


def _wait_terminal(server, name, count):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ours = list(lc.iter_lifecycle_batches(client, asset=name))
            if len(ours) == count and all(lc.is_terminal(b) for b in ours):
                return ours
            time.sleep(0.2)
    raise AssertionError("batches did not finish")


def test_sensor_observes_progress_and_requests_results_once(server, store, flow_name, instance,
                                                            tmp_path):
    flow = _flow(flow_name)
    batch = batch_resource(server.base_url, blocking=False)
    resources = {"batch": batch, "artifacts": store}
    occupy(server, tmp_path)  # our batches stay queued for a few seconds
    for part in ("a", "b"):
        run = materialize(flow.assets, partition_key=part, instance=instance, resources=resources)
        assert run.success
        # Non-blocking: the results asset waits for nobody and materializes nothing yet.
        assert run.asset_materializations_for_node(f"{flow_name}_results") == []

    def tick(cursor):
        context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return flow.sensor(context)

    first = tick(None)
    assert first.run_requests == []  # still queued behind the blockers
    observed = {e.partition: e.metadata for e in first.asset_events}
    assert set(observed) == {"a", "b"}
    assert all(e.asset_key == AssetKey(f"{flow_name}_batch") for e in first.asset_events)
    assert observed["a"]["terminal"].value is False

    _wait_terminal(server, flow_name, 2)
    second = tick(first.cursor)
    requested = {r.partition_key: r for r in second.run_requests}
    assert set(requested) == {"a", "b"}
    assert requested["a"].asset_selection == [AssetKey(f"{flow_name}_results")]
    assert requested["a"].run_key != requested["b"].run_key
    assert {e.partition for e in second.asset_events} == {"a", "b"}

    third = tick(second.cursor)  # nothing changed: no run requested twice, no observation
    assert third.run_requests == [] and third.asset_events == []

    for part, request in requested.items():
        run = materialize(flow.assets, partition_key=part, instance=instance, resources=resources,
                          selection=request.asset_selection)
        assert run.success
        assert store.exists(results_key(flow_name, part))
