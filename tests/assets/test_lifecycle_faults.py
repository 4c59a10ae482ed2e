"""Through a fault-injecting proxy: complete results, nothing submitted twice."""

from __future__ import annotations

import pyarrow.parquet as pq
from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import batch_resource, embedding_requests
from support.proxy import FaultProxy

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle, results_key
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["f"])


def test_faults_between_resource_and_engine(server, store, flow_name, instance):
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 6))
    with FaultProxy(server.base_url) as proxy:
        proxy.add("429", method="POST", path=r"/v1/batches", retry_after="1")
        proxy.add("reset_after", method="POST", path=r"/v1/batches")  # created, answer lost
        proxy.add("reset", method="POST", path=r"/v1/files")
        proxy.add("500", method="GET", path=r"/v1/batches.*", every=2, times=3)
        proxy.add("429", method="GET", path=r"/v1/batches/.+", retry_after="0.2", times=2)
        proxy.add("truncate", method="GET", path=r"/v1/files/.+/content", times=2)
        batch = batch_resource(proxy.base_url, max_requests_per_file=3)
        resources = {"batch": batch, "artifacts": store}
        result = materialize(flow.assets, partition_key="f", instance=instance,
                             resources=resources)
        assert result.success
        fired = {fault for fault, _, _ in proxy.injected}
        assert fired == {"429", "reset_after", "reset", "500", "truncate"}
        # Once more through the faults: re-attaches, still nothing new.
        proxy.add("reset_after", method="POST", path=r"/v1/batches")
        again = materialize(flow.assets, partition_key="f", instance=instance, resources=resources)
        assert again.success

    rows = pq.read_table(store.uri(results_key(flow_name, "f"))).to_pylist()
    assert sorted(r["custom_id"] for r in rows) == sorted(f"f-{i}" for i in range(6))
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(len(r["embedding"]) == 384 for r in rows)
    with BatchClient(server.base_url, api_key=server.api_key) as client:  # not through the proxy
        ours = list(lc.iter_lifecycle_batches(client, asset=flow_name))
    assert sorted(b["metadata"]["bw_shard"] for b in ours) == ["0", "1"]  # one batch per shard
