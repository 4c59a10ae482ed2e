"""Non-blocking mode: submission returns at once, the sensor drives collection."""

from __future__ import annotations

from dagster import (
    AssetKey,
    Definitions,
    StaticPartitionsDefinition,
    build_sensor_context,
    materialize,
)
from lifecycle_helpers import batch_resource, embedding_requests, occupy, wait_terminal

from batch_workflows import lifecycle as lc
from batch_workflows.dagster import batch_lifecycle, results_key
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["a", "b"])


def _flow(name):
    return batch_lifecycle(name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 4))


def _wait_terminal(server, name, count):
    return wait_terminal(server, name, count)


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

    # As the daemon resolves them: the results asset's job, with its checks.
    defs = Definitions(assets=flow.assets, asset_checks=flow.checks, sensors=flow.sensors,
                       resources=resources)
    context = build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs,
                                   resources=resources)
    data = defs.resolve_sensor_def(f"{flow_name}_batch_sensor").evaluate_tick(context)
    assert {r.partition_key for r in data.run_requests} == {"a", "b"}
    assert {c.name for c in data.run_requests[0].asset_check_keys} == {
        "all_requests_accounted", "error_rate"}

    for part, request in requested.items():
        run = materialize(flow.assets, partition_key=part, instance=instance, resources=resources,
                          selection=request.asset_selection)
        assert run.success
        assert store.exists(results_key(flow_name, part))


def _tick(flow, instance, resources, cursor):
    return flow.sensor(build_sensor_context(instance=instance, cursor=cursor,
                                            resources=resources))


def test_sensor_follows_resubmissions(server, store, flow_name, instance, tmp_path):
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 4, {2}))
    batch = batch_resource(server.base_url, blocking=False, max_attempts=2)
    resources = {"batch": batch, "artifacts": store}
    assert materialize(flow.assets[:2], partition_key="a", instance=instance,
                       resources=resources).success
    _wait_terminal(server, flow_name, 1)
    first = _tick(flow, instance, resources, None)
    [request] = first.run_requests
    assert request.run_key.endswith(":1")

    occupy(server, tmp_path)  # the resubmission stays queued: the run cannot finish it
    run = materialize(flow.assets, partition_key="a", instance=instance, resources=resources,
                      selection=request.asset_selection)
    assert run.success
    assert run.asset_materializations_for_node(f"{flow_name}_results") == []
    second = _tick(flow, instance, resources, first.cursor)
    assert second.run_requests == []
    assert [e.metadata["attempt"].value for e in second.asset_events] == [2]

    _wait_terminal(server, flow_name, 2)
    third = _tick(flow, instance, resources, second.cursor)
    [again] = third.run_requests
    assert again.run_key.endswith(":2") and again.partition_key == "a"
    done = materialize(flow.assets, partition_key="a", instance=instance, resources=resources,
                       selection=again.asset_selection)
    meta = done.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
    assert meta["attempts"].value == 2
    assert meta["succeeded"].value == 3 and meta["failed"].value == 1


def test_changed_content_cancels_the_superseded_batches(server, store, flow_name, instance,
                                                        tmp_path):
    batch = batch_resource(server.base_url, blocking=False)
    resources = {"batch": batch, "artifacts": store}
    old = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                          lambda context: embedding_requests(context.partition_key, 3))
    new = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                          lambda context: embedding_requests(context.partition_key, 5))
    occupy(server, tmp_path)
    assert materialize(old.assets[:2], partition_key="b", instance=instance,
                       resources=resources).success
    run = materialize(new.assets[:2], partition_key="b", instance=instance, resources=resources)
    cancelled = run.asset_materializations_for_node(f"{flow_name}_batch")[0].metadata[
        "superseded_cancelled"].value
    assert len(cancelled) == 1
    ours = _wait_terminal(server, flow_name, 2)
    status = {b["id"]: b["status"] for b in ours}
    assert status[cancelled[0]] == "cancelled"
    tick = _tick(new, instance, resources, None)
    [request] = tick.run_requests  # only the current submission is collected
    current = [b for b in ours if b["id"] != cancelled[0]][0]
    assert request.run_key.endswith(current["metadata"]["bw_key"][:16] + ":1")
    done = materialize(new.assets, partition_key="b", instance=instance, resources=resources,
                       selection=request.asset_selection)
    assert done.asset_materializations_for_node(f"{flow_name}_results")[0].metadata[
        "succeeded"].value == 5


def test_sensor_recovers_partition_keys_longer_than_metadata_allows(server, store, flow_name,
                                                                    instance):
    long_key = "topic/" + "é" * 300 + "x" * 400  # 706 chars: stored as sha256:… in metadata
    parts = StaticPartitionsDefinition([long_key, "short"])
    flow = batch_lifecycle(flow_name, parts, EMBEDDINGS,
                           lambda context: embedding_requests("long", 3))
    resources = {"batch": batch_resource(server.base_url, blocking=False), "artifacts": store}
    assert materialize(flow.assets[:2], partition_key=long_key, instance=instance,
                       resources=resources).success
    [batch] = _wait_terminal(server, flow_name, 1)
    assert batch["metadata"][lc.META_PARTITION] == lc.partition_tag(long_key) != long_key

    [request] = _tick(flow, instance, resources, None).run_requests
    assert request.partition_key == long_key

    # Without the record the batch asset keeps, the partitions definition's keys are hashed.
    from batch_workflows.lifecycle.layout import partition_index_key

    store.delete(partition_index_key(flow_name, lc.partition_tag(long_key)))
    tick = _tick(flow, instance, resources, None)
    assert [r.partition_key for r in tick.run_requests] == [long_key]
    assert [e.partition for e in tick.asset_events] == [long_key]

    done = materialize(flow.assets, partition_key=long_key, instance=instance,
                       resources=resources, selection=request.asset_selection)
    assert done.success and store.exists(results_key(flow_name, long_key))
