"""An unpartitioned lifecycle: same assets, one artifact folder, a sensor without partitions."""

from __future__ import annotations

import time

from dagster import build_sensor_context, materialize
from lifecycle_helpers import batch_resource, embedding_requests

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle, load_results, partition_dir, results_key
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.wire import is_terminal


def test_unpartitioned_flow_blocking_then_tracked(server, store, flow_name, instance):
    flow = batch_lifecycle(flow_name, None, EMBEDDINGS,
                           lambda context: embedding_requests("all", 3),
                           params={"note": "enters the key"})
    resources = {"batch": batch_resource(server.base_url), "artifacts": store}
    result = materialize([*flow.assets, *flow.checks], instance=instance, resources=resources)
    assert result.success
    assert results_key(flow_name, None) == f"{partition_dir(flow_name, None)}/results.parquet"
    assert len(load_results(store, flow_name, None)) == 3

    # The same submission seen by the sensor (non-blocking resource): one run, no partition.
    tracking = {"batch": batch_resource(server.base_url, blocking=False), "artifacts": store}
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        for _ in range(100):
            if all(is_terminal(b) for b in lc.iter_lifecycle_batches(client, asset=flow_name)):
                break
            time.sleep(0.1)
    tick = flow.sensor(build_sensor_context(instance=instance, resources=tracking))
    [request] = tick.run_requests
    assert request.partition_key is None
    assert [e.partition for e in tick.asset_events] == [None]
