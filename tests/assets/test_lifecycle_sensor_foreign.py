"""Batches of a partition this instance does not have (another deployment on the same provider
account, a deleted partition) are skipped by the tracking sensor: they no longer fail the tick,
and the instance's own partitions are still collected."""

from __future__ import annotations

import time

from dagster import Definitions, StaticPartitionsDefinition, build_sensor_context, materialize
from lifecycle_helpers import batch_resource, embedding_requests

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.wire import is_terminal


def _flow(name: str, keys: list[str]):
    return batch_lifecycle(name, StaticPartitionsDefinition(keys), EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 2))


def test_a_partition_unknown_here_is_skipped_not_fatal(server, store, flow_name, instance):
    resources = {"batch": batch_resource(server.base_url, blocking=False), "artifacts": store}
    elsewhere, here = _flow(flow_name, ["gone", "ours"]), _flow(flow_name, ["ours"])
    assert materialize(elsewhere.assets[:2], partition_key="gone", instance=instance,
                       resources=resources).success
    assert materialize(here.assets[:2], partition_key="ours", instance=instance,
                       resources=resources).success
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        deadline = time.monotonic() + 60
        while not (len(batches := list(lc.iter_lifecycle_batches(client, asset=flow_name))) == 2
                   and all(is_terminal(b) for b in batches)):
            assert time.monotonic() < deadline, "batches did not finish"
            time.sleep(0.2)

    # Resolved as the daemon resolves it: an unknown partition here used to raise.
    defs = Definitions(assets=here.assets, asset_checks=here.checks, sensors=here.sensors,
                       resources=resources)
    context = build_sensor_context(instance=instance, definitions=defs, resources=resources)
    data = defs.resolve_sensor_def(f"{flow_name}_batch_sensor").evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["ours"]
