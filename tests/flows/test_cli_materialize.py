"""The shipped corpus's partitions exist wherever the code location loads with a real instance,
so Dagster's own CLI can materialize them on a fresh DAGSTER_HOME (it cannot add partitions)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance

import assets.embeddings as flow
from batch_workflows.flows.corpus import pydoc_shard_keys
from batch_workflows.flows.embeddings.vectors import QdrantSettings, VectorIndex, open_client

DAGSTER = Path(sys.executable).with_name("dagster")
SHARDS = 40  # EMBEDDINGS_PYDOC_SHARDS: shard 1 of 40 is two short topics, a fast run
PARTITION = f"pydoc-1-of-{SHARDS}"
ASSETS = "embeddings_requests,embeddings_batch,embeddings_results,embeddings_index"


def test_dagster_cli_materializes_a_shipped_partition_on_a_fresh_instance(tmp_path, server):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BATCH_PROVIDER": "local",
        "BATCH_BASE_URL": server.base_url,
        "BATCH_POLL_INTERVAL": "0.5",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "QDRANT_COLLECTION": "cli",
        "BATCH_ARTIFACTS_URI": str(tmp_path / "artifacts"),
        "EMBEDDINGS_WATCH_URI": str(tmp_path / "inbox"),
        "EMBEDDINGS_PYDOC_SHARDS": str(SHARDS),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "BATCH_API_KEY"):
        env.pop(name, None)
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "assets.definitions",
         "--select", ASSETS, "--partition", PARTITION],
        capture_output=True, text=True, env=env, timeout=300, cwd=Path(flow.__file__).parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    with DagsterInstance.from_config(str(home)) as instance:
        known = instance.get_dynamic_partitions(flow.embeddings_partitions.name)
    assert sorted(known) == sorted(pydoc_shard_keys(SHARDS))  # every shard, each once
    with open_client(QdrantSettings(path=str(tmp_path / "qdrant"), collection="cli")) as client:
        assert VectorIndex(client, "cli").count(PARTITION) > 0


def test_registration_is_idempotent_and_never_fails_the_load(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EMBEDDINGS_PYDOC_SHARDS", "3")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert flow.register_corpus_partitions() == []  # no real instance: nothing to remember
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(flow.embeddings_partitions.name, ["pydoc-2-of-3"])
    assert flow.register_corpus_partitions() == ["pydoc-1-of-3", "pydoc-3-of-3"]
    assert flow.register_corpus_partitions() == []
    with DagsterInstance.get() as instance:
        known = instance.get_dynamic_partitions(flow.embeddings_partitions.name)
    assert sorted(known) == pydoc_shard_keys(3)
    # A broken instance (DAGSTER_HOME not a folder) or bad settings: a warning, no exception.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "missing"))
    with caplog.at_level(logging.WARNING, logger="assets.embeddings"):
        assert flow.register_corpus_partitions() == []
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EMBEDDINGS_PYDOC_SHARDS", "many")
    with caplog.at_level(logging.WARNING, logger="assets.embeddings"):
        assert flow.register_corpus_partitions() == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "assets.embeddings"]
    assert len(warnings) == 2 and "EMBEDDINGS_PYDOC_SHARDS" in warnings[1]
