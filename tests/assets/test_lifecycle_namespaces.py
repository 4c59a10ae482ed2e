"""Two Dagster deployments (different artifact stores, no namespace configured) on one provider
account, materializing the same flow and partition with different content: neither cancels,
adopts, tracks or collects the other's batches."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition, build_sensor_context, materialize
from lifecycle_helpers import batch_resource, embedding_requests, occupy, wait_terminal

from batch_workflows import lifecycle as lc
from batch_workflows.dagster import ArtifactStore, batch_lifecycle
from batch_workflows.profiles import EMBEDDINGS

PARTS = StaticPartitionsDefinition(["2025-06-01"])
DAY = "2025-06-01"


def test_staging_and_production_share_an_account_without_interfering(server, flow_name,
                                                                     instance, tmp_path):
    sizes = {"staging": 3, "prod": 5}
    flows = {d: batch_lifecycle(flow_name, PARTS, EMBEDDINGS,
                                lambda context, n=n: embedding_requests(context.partition_key, n))
             for d, n in sizes.items()}
    resources = {d: {"batch": batch_resource(server.base_url, blocking=False),
                     "artifacts": ArtifactStore(base_uri=str(tmp_path / d))} for d in sizes}
    occupy(server, tmp_path)  # both submissions stay in flight while the other submits
    submitted = {}
    for d in ("staging", "prod"):
        run = materialize(flows[d].assets[:2], partition_key=DAY, instance=instance,
                          resources=resources[d])
        meta = run.asset_materializations_for_node(f"{flow_name}_batch")[0].metadata
        assert meta["superseded_cancelled"].value == []  # nobody cancelled the other's
        submitted[d] = run
    batches = wait_terminal(server, flow_name, 2, timeout=120)
    assert {b["status"] for b in batches} == {"completed"}
    by_ns = {b["metadata"][lc.META_NAMESPACE]: b for b in batches}
    for d in sizes:
        ns = resources[d]["batch"].namespace_for(resources[d]["artifacts"])
        mine = by_ns[ns]
        # Each sensor asks for its own submission only.
        tick = flows[d].sensor(build_sensor_context(instance=instance, resources=resources[d]))
        [request] = tick.run_requests
        assert request.run_key.endswith(mine["metadata"][lc.META_KEY][:16] + ":1")
        done = materialize(flows[d].assets, partition_key=DAY, instance=instance,
                           resources=resources[d], selection=request.asset_selection)
        meta = done.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
        assert meta["succeeded"].value == sizes[d] and meta["rows"].value == sizes[d]
        summary = lc.read_summary(resources[d]["artifacts"], flow_name, DAY)
        assert summary.batch_ids == [mine["id"]]
