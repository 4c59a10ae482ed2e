"""The code location loads: every definition validates, with settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

ROOT = Path(__file__).resolve().parents[2]


def _load(env: dict[str, str]):
    code = (
        "from assets.definitions import defs, FLOWS\n"
        "from dagster import AssetKey\n"
        "repo = defs.get_repository_def()\n"
        "keys = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())\n"
        "batch = defs.resources['batch']\n"
        "print(keys)\n"
        "print(sorted(s.name for s in repo.sensor_defs))\n"
        "print(batch.provider, batch.is_blocking, batch.resolved_base_url,"
        " repo.assets_defs_by_key[AssetKey('embeddings_batch')].op.pool)\n"
        "print(sorted(defs.resources))\n"
        "print(repr(batch.api_key))\n"
    )
    full = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_definitions_load_on_the_embedded_default():
    keys, sensors, batch, resources, _ = _load({"BATCH_PROVIDER": "local"})
    for name in ("embeddings_requests", "embeddings_batch", "embeddings_results"):
        assert name in keys
    assert "embeddings_batch_sensor" in sensors
    assert batch.startswith("local True http://127.0.0.1:8765/v1 batch_submit_batch")
    assert resources == "['artifacts', 'batch', 'qdrant']"


def test_definitions_take_provider_settings_from_the_environment():
    env = {"BATCH_PROVIDER": "nebius", "BATCH_API_KEY": "sk-secret-value-123",
           "BATCH_ARTIFACTS_URI": "s3://bucket/prefix"}
    *_, batch, _, api_key = _load(env)
    assert batch == "nebius False https://api.studio.nebius.com/v1 batch_submit_batch"
    assert "sk-secret-value-123" not in api_key  # an EnvVar, resolved only at run time


def test_definitions_validate_with_the_dagster_cli(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    if not dagster.exists():
        pytest.skip("dagster CLI not installed next to the interpreter")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "All code locations passed validation" in out.stdout + out.stderr


def test_results_asset_key_is_what_flows_depend_on():
    from assets.flows import load_flow

    lifecycle = load_flow("embeddings").lifecycle
    assert lifecycle.results_asset_key == AssetKey("embeddings_results")
    assert lifecycle.results_key("2024-01-01") == "embeddings/2024-01-01/results.parquet"
