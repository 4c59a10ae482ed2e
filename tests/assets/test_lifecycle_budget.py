"""The budget cap refuses a submission before anything is uploaded or paid for."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import MODEL, batch_resource, embedding_requests

from assets.lifecycle import batch_lifecycle
from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["b"])


def _ours(server, name):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        return list(lc.iter_lifecycle_batches(client, asset=name))


def test_budget_cap_refuses_and_submits_nothing(server, store, flow_name, instance, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text(f"model,input_usd_per_million,output_usd_per_million\n{MODEL},2000,0\n")
    flow = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                           lambda context: embedding_requests(context.partition_key, 20))
    tight = batch_resource(server.base_url, price_file=str(prices), max_cost_usd=0.0001)
    result = materialize(flow.assets, partition_key="b", instance=instance, raise_on_error=False,
                         resources={"batch": tight, "artifacts": store})
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    cause = failure.step_failure_data.error.cause
    assert cause.cls_name == "BudgetExceededError"
    assert "max_cost_usd" in cause.message and "nothing was submitted" in cause.message
    assert _ours(server, flow_name) == []

    roomy = batch_resource(server.base_url, price_file=str(prices), max_cost_usd=100.0)
    ok = materialize(flow.assets, partition_key="b", instance=instance,
                     resources={"batch": roomy, "artifacts": store})
    assert ok.success
    meta = ok.asset_materializations_for_node(f"{flow_name}_batch")[0].metadata
    assert 0 < meta["estimated_cost_usd"].value <= 100.0
    results = ok.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
    assert results["cost_usd_batch_rate"].value > 0  # 1000 USD/M tokens at the batch rate
    assert len(_ours(server, flow_name)) == 1
