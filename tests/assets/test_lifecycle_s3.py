"""The lifecycle with its artifacts on S3 (moto's standalone server over loopback)."""

from __future__ import annotations

import json

from dagster import StaticPartitionsDefinition, materialize
from lifecycle_helpers import batch_resource, embedding_requests
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server

from batch_workflows.dagster import (
    ArtifactStore,
    batch_lifecycle,
    load_results,
    partition_dir,
    results_key,
)
from batch_workflows.profiles import EMBEDDINGS


def test_artifacts_on_s3(server, flow_name, instance, tmp_path):
    with start_s3_server() as s3:
        s3.create_bucket("lifecycle")
        store = ArtifactStore(base_uri=f"s3://lifecycle/runs/{tmp_path.name}",
                              s3_endpoint_url=s3.endpoint_url, s3_region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        flow = batch_lifecycle(flow_name, StaticPartitionsDefinition(["s"]), EMBEDDINGS,
                               lambda context: embedding_requests("s", 4, {0}))
        resources = {"batch": batch_resource(server.base_url, max_attempts=2),
                     "artifacts": store}
        result = materialize([*flow.assets, *flow.checks], partition_key="s", instance=instance,
                             resources=resources)
        assert result.success
        meta = result.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
        assert meta["path"].value == store.uri(results_key(flow_name, "s"))
        assert meta["path"].value.startswith("s3://lifecycle/runs/")
        keys = store.list(partition_dir(flow_name, "s") + "/")
        assert any(k.endswith("attempt-2/submission.json") for k in keys)
        assert any("/raw/" in k and k.endswith("-output.jsonl") for k in keys)
        summary = json.loads(store.read_bytes(f"{partition_dir(flow_name, 's')}/summary.json"))
        assert summary["rows"] == summary["submitted"] == 4
        df = load_results(store, flow_name, "s", status=None)
        assert sorted(df["status"]) == ["failed", "succeeded", "succeeded", "succeeded"]
