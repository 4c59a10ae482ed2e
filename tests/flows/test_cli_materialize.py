"""Dagster's own CLI materializes a shipped partition on a fresh DAGSTER_HOME once the flow's
partitions are registered (Dagster's CLI cannot add dynamic partitions); registering is an
explicit, idempotent step whose errors propagate, never a side effect of loading the code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterError, DagsterInstance

from assets.flows import load_flow
from assets.register_partitions import main as register_main
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.corpus import pydoc_shard_keys
from batch_workflows.flows.embeddings.vectors import QdrantSettings, VectorIndex, open_client

DAGSTER = Path(sys.executable).with_name("dagster")
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = "embeddings_sources"  # the embeddings flow's dynamic partitions definition
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
    register = subprocess.run([sys.executable, "-m", "assets.register_partitions"],
                              capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert register.returncode == 0, register.stderr[-3000:]
    assert f"embeddings: added {SHARDS} partition(s) to {PARTITIONS}: {PARTITION}," \
        in register.stdout
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "assets.definitions",
         "--select", ASSETS, "--partition", PARTITION],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    with DagsterInstance.from_config(str(home)) as instance:
        known = instance.get_dynamic_partitions(PARTITIONS)
    assert sorted(known) == sorted(pydoc_shard_keys(SHARDS))  # every shard, each once
    with open_client(QdrantSettings(path=str(tmp_path / "qdrant"), collection="cli")) as client:
        assert VectorIndex(client, "cli").count(PARTITION) > 0


def test_loading_the_code_location_registers_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "EMBEDDINGS_WATCH_URI": str(tmp_path / "in")}
    subprocess.run([sys.executable, "-c", "import assets.definitions"], env=env, cwd=ROOT,
                   check=True, timeout=120)
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(PARTITIONS) == []


def test_registration_is_idempotent_and_its_errors_propagate(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDINGS_PYDOC_SHARDS", "3")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "notes.md").write_text("# Notes\n\nabout generators\n")
    monkeypatch.setenv("EMBEDDINGS_WATCH_URI", str(inbox))
    home = tmp_path / "home"
    home.mkdir()
    flow = load_flow("embeddings")  # its defs.yaml, the variables above resolved now
    assert flow.partitions_def.name == PARTITIONS
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(PARTITIONS, ["pydoc-2-of-3"])
        assert flow.register_partitions(instance) == ["pydoc-1-of-3", "pydoc-3-of-3", "notes.md"]
        assert flow.register_partitions(instance) == []
        assert flow.register_partitions(instance, ["extra.jsonl"]) == ["extra.jsonl"]
        known = instance.get_dynamic_partitions(PARTITIONS)
        assert sorted(known) == sorted([*pydoc_shard_keys(3), "notes.md", "extra.jsonl"])
    # Bad settings: the error itself, naming the variable, from the flow and from the command.
    monkeypatch.setenv("EMBEDDINGS_PYDOC_SHARDS", "many")
    with pytest.raises(ConfigurationError, match="EMBEDDINGS_PYDOC_SHARDS"):
        load_flow("embeddings")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with pytest.raises(ConfigurationError, match="EMBEDDINGS_PYDOC_SHARDS"):
        register_main()
    # No instance to remember them, or a broken one: the command fails, saying why.
    monkeypatch.setenv("EMBEDDINGS_PYDOC_SHARDS", "3")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(DagsterError, match="DAGSTER_HOME"):
        register_main()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "missing"))
    with pytest.raises(DagsterError, match="DAGSTER_HOME"):
        register_main()
