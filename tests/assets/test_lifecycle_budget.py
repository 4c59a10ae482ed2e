"""The budget cap refuses a submission before anything is uploaded or paid for."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import MODEL, batch_resource, embedding_requests, occupy

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.dagster import batch_lifecycle
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


def test_refusal_cancels_nothing_and_resubmissions_are_checked_too(server, store, flow_name,
                                                                  instance, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text(f"model,input_usd_per_million,output_usd_per_million\n{MODEL},2000,0\n")

    def resource(cap):
        return {"batch": batch_resource(server.base_url, blocking=False, price_file=str(prices),
                                        max_cost_usd=cap), "artifacts": store}

    old = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                          lambda context: embedding_requests(context.partition_key, 4, {2}))
    new = batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                          lambda context: embedding_requests(context.partition_key, 40))
    occupy(server, tmp_path)  # the old batch stays live while the new content is refused
    assert materialize(old.assets[:2], partition_key="b", instance=instance,
                       resources=resource(0.1)).success
    [live] = _ours(server, flow_name)
    refused = materialize(new.assets[:2], partition_key="b", instance=instance,
                          raise_on_error=False, resources=resource(0.1))
    assert not refused.success
    cause = [e for e in refused.all_events
             if e.event_type_value == "STEP_FAILURE"][0].step_failure_data.error.cause
    assert cause.cls_name == "BudgetExceededError"
    assert "nothing was submitted and nothing was cancelled" in cause.message
    [still] = _ours(server, flow_name)  # the superseded batch was not cancelled
    assert still["id"] == live["id"] and still["status"] not in ("cancelling", "cancelled")

    # Back to the old content; its failed request would be resubmitted, but above the cap.
    assert materialize(old.assets[:1], partition_key="b", instance=instance,
                       resources=resource(0.1)).success
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        lc.wait(client, [live["id"]], poll_interval=0.2, timeout=120)
    collect = materialize(old.assets, partition_key="b", instance=instance, raise_on_error=False,
                          resources=resource(0.001), selection=[old.results.key])
    assert not collect.success
    cause = [e for e in collect.all_events
             if e.event_type_value == "STEP_FAILURE"][0].step_failure_data.error.cause
    assert cause.cls_name == "BudgetExceededError" and "resubmission of 1" in cause.message
    assert [b["id"] for b in _ours(server, flow_name)] == [live["id"]]  # nothing resubmitted
