"""The factory-built assets end to end against the real local server (blocking mode)."""

from __future__ import annotations

from dataclasses import replace

import pyarrow.parquet as pq
from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import batch_resource, embedding_requests

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle, load_results, results_key
from batch_workflows.lifecycle import read_summary
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["p1", "p2"])


def _flow(name, n=5, bad=frozenset()):
    def build(context):
        return embedding_requests(context.partition_key, n, bad)

    return batch_lifecycle(name, PARTS, EMBEDDINGS, build)


def _ours(server, name):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        return list(lc.iter_lifecycle_batches(client, asset=name))


def test_materialize_end_to_end_then_again_submits_nothing(server, store, flow_name, instance):
    flow = _flow(flow_name)
    resources = {"batch": batch_resource(server.base_url), "artifacts": store}
    result = materialize([*flow.assets, *flow.checks], partition_key="p1", instance=instance,
                         resources=resources)
    assert result.success
    table = pq.read_table(store.uri(results_key(flow_name, "p1")))
    assert sorted(table.column("custom_id").to_pylist()) == sorted(f"p1-{i}" for i in range(5))
    assert set(table.column("status").to_pylist()) == {"succeeded"}
    assert len(table.column("embedding")[0].as_py()) == 384
    mat = result.asset_materializations_for_node(f"{flow_name}_results")[0]
    assert mat.metadata["succeeded"].value == 5
    assert mat.metadata["attempts"].value == 1
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks} == {"all_requests_accounted": True,
                                                        "error_rate": True}
    assert len(_ours(server, flow_name)) == 1

    again = materialize(flow.assets, partition_key="p1", instance=instance, resources=resources)
    assert again.success
    batch_meta = again.asset_materializations_for_node(f"{flow_name}_batch")[0].metadata
    assert batch_meta["reattached"].value is True
    assert batch_meta["batches_created"].value == 0
    assert len(_ours(server, flow_name)) == 1  # the provider's list: still one batch

    df = load_results(store, flow_name, "p1")
    assert len(df) == 5

    # The accounted check also fails on result lines for ids never submitted, or duplicates.
    summary = read_summary(store, flow_name, "p1")
    assert summary.unexpected == summary.duplicates == 0
    assert summary.accounted
    for bad in ({"unexpected": 2}, {"duplicates": 1}, {"rows": 4}):
        assert replace(summary, **bad).accounted is False, bad


def test_changed_content_supersedes(server, store, flow_name, instance):
    resources = {"batch": batch_resource(server.base_url), "artifacts": store}
    assert materialize(_flow(flow_name, n=3).assets, partition_key="p2", instance=instance,
                       resources=resources).success
    assert materialize(_flow(flow_name, n=4).assets, partition_key="p2", instance=instance,
                       resources=resources).success
    batches = _ours(server, flow_name)
    assert len({b["metadata"]["bw_key"] for b in batches}) == 2
    summary = read_summary(store, flow_name, "p2")
    assert summary.submitted == summary.rows == 4
