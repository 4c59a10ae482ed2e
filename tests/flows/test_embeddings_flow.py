"""The embeddings flow end to end on the local engine, a small slice of the pydoc corpus:
requests → batch → results → Qdrant, its checks, re-materialization, stale points, search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from support.dagster_results import check_verdicts, materialization_metadata

from assets.flows import load_flow
from batch_workflows.dagster import ArtifactStore, BatchResource, QdrantResource
from batch_workflows.flows.corpus import first_line, pydoc_shard_keys, pydoc_topics
from batch_workflows.flows.embeddings.vectors import (
    QdrantSettings,
    VectorIndex,
    open_client,
    point_id,
)

TOPICS = ["try", "lambda", "for", "while", "import", "with", "class"]
FILE = "slice.jsonl"


def _selection(flow):
    return [*flow.lifecycle.assets, flow.index, *flow.lifecycle.checks,
            flow.points_match_chunks, flow.chunks_retrieve_themselves]


def _write_slice(inbox: Path, topics: list[str]) -> None:
    text = pydoc_topics()
    inbox.mkdir(parents=True, exist_ok=True)
    with open(inbox / FILE, "w") as fh:
        for t in topics:
            # With the topic's heading as title: chunks are embedded under it.
            fh.write(json.dumps({"id": t, "text": text[t], "title": first_line(text[t])}) + "\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("flow")
    inbox = root / "inbox"
    _write_slice(inbox, TOPICS)
    mp = pytest.MonkeyPatch()
    mp.setenv("EMBEDDINGS_WATCH_URI", str(inbox))
    mp.setenv("EMBEDDINGS_CHUNK_TOKENS", "120")
    mp.setenv("EMBEDDINGS_INPUTS_PER_REQUEST", "16")
    # assets/defs/embeddings/defs.yaml, with the variables above as its templates resolve them.
    flow = load_flow("embeddings")
    resources = {
        "batch": BatchResource(provider="local", base_url=server.base_url,
                               start_local_engine=False, poll_interval_seconds=0.2, blocking=True),
        "artifacts": ArtifactStore(base_uri=str(root / "artifacts")),
        "qdrant": QdrantResource(path=str(root / "qdrant"), collection="docs"),
    }
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(flow.partitions_def.name, [FILE])
        yield {"root": root, "inbox": inbox, "resources": resources, "instance": instance,
               "server": server, "flow": flow}
    mp.undo()


def _run(env):
    return materialize(_selection(env["flow"]), partition_key=FILE, resources=env["resources"],
                       instance=env["instance"])


@pytest.fixture(scope="module")
def first(env):
    return _run(env)


def _points(env, partition: str | None = FILE) -> int:
    with env["resources"]["qdrant"].open() as index:
        return index.count(partition)


def test_first_materialization_indexes_every_chunk(env, first):
    req = materialization_metadata(first, "embeddings_requests")
    index = materialization_metadata(first, "embeddings_index")
    assert materialization_metadata(first, "embeddings_batch")["batches_created"] == 1
    # Many chunks per request: far fewer requests than chunks.
    assert index["chunks"] > 2 * req["requests"] > 0
    assert index["points"] == index["chunks"] == index["upserted"] == _points(env)
    assert check_verdicts(first) == {"all_requests_accounted": True, "error_rate": True,
                              "points_match_chunks": True, "chunks_retrieve_themselves": True}
    with env["resources"]["qdrant"].open() as vi:
        payload = vi.client.retrieve("docs", [point_id("lambda", 0)], with_payload=True)[0].payload
    assert payload["document_id"] == "lambda" and payload["chunk_index"] == 0
    assert payload["source"] == FILE and payload["partition"] == FILE
    assert payload["text"].startswith("Lambdas")


def test_second_materialization_submits_nothing_and_changes_nothing(env, first):
    before = _points(env)
    again = _run(env)
    batch = materialization_metadata(again, "embeddings_batch")
    assert batch["batches_created"] == 0 and batch["reattached"] is True
    assert batch["batch_ids"] == materialization_metadata(first, "embeddings_batch")["batch_ids"]
    index = materialization_metadata(again, "embeddings_index")
    assert (index["upserted"], index["unchanged"], index["stale_deleted"]) == (0, before, 0)
    assert _points(env) == before
    assert all(check_verdicts(again).values())


def test_search_cli_finds_the_right_topic_with_json_keys(env, first):
    cli = Path(sys.executable).with_name("batch-workflows")
    run_env = {**os.environ, "QDRANT_PATH": str(env["root"] / "qdrant"),
               "QDRANT_COLLECTION": "docs", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run_env.pop("QDRANT_URL", None)
    out = subprocess.run(
        [str(cli), "search", "how do I catch and handle exceptions", "--limit", "3", "--json"],
        capture_output=True, text=True, env=run_env, timeout=300, check=True,
    )
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(hits) == 3
    assert all(set(h) == {"score", "document_id", "chunk_index", "text"} for h in hits)
    assert hits[0]["document_id"] == "try"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert len({h["document_id"] for h in hits}) == 3  # one hit per document
    chunks = subprocess.run(
        [str(cli), "search", "how do I catch and handle exceptions", "--limit", "6", "--json",
         "--chunks"],
        capture_output=True, text=True, env=run_env, timeout=300, check=True,
    ).stdout
    raw = [json.loads(line) for line in chunks.splitlines()]
    assert len(raw) == 6 and raw[0] == hits[0]  # the same best chunk
    assert len({h["document_id"] for h in raw}) < 6  # try's chunks crowd the list
    proc = subprocess.run(
        [str(cli), "search", "anonymous functions", "--limit", "1",
         "--base-url", env["server"].base_url],  # the engine's real-time route: same vectors
        capture_output=True, text=True, env=run_env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.lstrip().startswith("1.") and "lambda #" in text


def test_removed_document_loses_its_points(env, first):
    _write_slice(env["inbox"], [t for t in TOPICS if t != "while"])
    try:
        result = _run(env)
        index = materialization_metadata(result, "embeddings_index")
        assert materialization_metadata(result, "embeddings_batch")["batches_created"] == 1  # new content
        assert index["stale_deleted"] > 0
        assert index["points"] == index["chunks"] == _points(env)
        with env["resources"]["qdrant"].open() as vi:
            docs = {vi.client.retrieve("docs", [pid], with_payload=["document_id"])[0]
                    .payload["document_id"] for pid in vi.partition_ids(FILE)}
        assert "while" not in docs and "try" in docs
        assert all(check_verdicts(result).values())
    finally:
        _write_slice(env["inbox"], TOPICS)


def test_inbox_sensor_adds_partitions_and_runs_new_or_changed_files(env, tmp_path):
    flow = env["flow"]
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance)
        result = flow.inbox_sensor(ctx)
        (add,) = result.dynamic_partitions_requests
        assert list(add.partition_keys) == [*pydoc_shard_keys(2), FILE]
        assert [r.partition_key for r in result.run_requests] == [FILE]
        instance.add_dynamic_partitions(flow.partitions_def.name, list(add.partition_keys))
        again = flow.inbox_sensor(build_sensor_context(instance=instance,
                                                                  cursor=result.cursor))
        assert again.run_requests == [] and again.dynamic_partitions_requests == []
        (env["inbox"] / "new.txt").write_text("A new note about generators and yield.")
        try:
            third = flow.inbox_sensor(build_sensor_context(instance=instance,
                                                                      cursor=again.cursor))
            assert list(third.dynamic_partitions_requests[0].partition_keys) == ["new.txt"]
            assert [r.partition_key for r in third.run_requests] == ["new.txt"]
        finally:
            (env["inbox"] / "new.txt").unlink()


def test_search_cli_on_an_empty_collection_says_so(tmp_path):
    cli = Path(sys.executable).with_name("batch-workflows")
    run_env = {**os.environ, "QDRANT_PATH": str(tmp_path / "empty")}
    run_env.pop("QDRANT_URL", None)
    out = subprocess.run([str(cli), "search", "anything"], capture_output=True, text=True,
                         env=run_env, timeout=120)
    assert out.returncode == 1 and "no points" in out.stderr
    with open_client(QdrantSettings(path=str(tmp_path / "empty"))) as client:
        assert VectorIndex(client, "documents").count() == 0
