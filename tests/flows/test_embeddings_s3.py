"""The embeddings flow with its inbox and artifacts on S3 (moto's standalone server)."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server

from assets.flows import load_flow
from batch_workflows.dagster import ArtifactStore, BatchResource, QdrantResource
from batch_workflows.flows.corpus import pydoc_topics


def test_s3_inbox_and_artifacts(server, tmp_path, monkeypatch):
    topics = pydoc_topics()
    with start_s3_server() as s3:
        s3.create_bucket("emb")
        body = "".join(json.dumps({"id": k, "text": topics[k]}) + "\n" for k in ("pass", "del"))
        s3.client().put_object(Bucket="emb", Key="inbox/two.jsonl", Body=body.encode())
        for name, value in {"AWS_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                            "EMBEDDINGS_WATCH_URI": "s3://emb/inbox"}.items():
            monkeypatch.setenv(name, value)
        flow = load_flow("embeddings")  # its defs.yaml, EMBEDDINGS_WATCH_URI now set
        store = ArtifactStore(base_uri="s3://emb/artifacts", s3_endpoint_url=s3.endpoint_url,
                              s3_region_name=REGION, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY)
        qdrant = QdrantResource(path=str(tmp_path / "qdrant"))
        resources = {"batch": BatchResource(provider="local", base_url=server.base_url,
                                            start_local_engine=False, poll_interval_seconds=0.2,
                                            blocking=True),
                     "artifacts": store, "qdrant": qdrant}
        with DagsterInstance.ephemeral() as instance:
            tick = flow.inbox_sensor(build_sensor_context(instance=instance))
            assert [r.partition_key for r in tick.run_requests] == ["two.jsonl"]
            instance.add_dynamic_partitions(flow.partitions_def.name, ["two.jsonl"])
            result = materialize(
                [*flow.lifecycle.assets, flow.index, flow.points_match_chunks],
                partition_key="two.jsonl", resources=resources, instance=instance)
        assert result.success
        (mat,) = result.asset_materializations_for_node("embeddings_index")
        assert mat.metadata["points"].value == mat.metadata["chunks"].value > 0
        keys = store.list("embeddings/two.jsonl/")
        assert "embeddings/two.jsonl/chunks.parquet" in keys
        assert "embeddings/two.jsonl/results.parquet" in keys
    with qdrant.open() as index:
        hits = {p["document_id"] for p in index.search([0.0] * 383 + [1.0], limit=50)}
    assert hits == {"pass", "del"}


@pytest.fixture(autouse=True)
def _no_inherited_s3_settings(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
