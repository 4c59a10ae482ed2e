"""The submission pool: both assets that create batches are in it, and the repo's instance
settings (dagster.yaml, copied into DAGSTER_HOME by `make dev` and the demo) give it one slot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dagster import DagsterInstance

from assets.lifecycle import batch_lifecycle
from batch_workflows.profiles import EMBEDDINGS
from resources.batch import default_pool

ROOT = Path(__file__).resolve().parents[2]


def test_batch_and_results_assets_share_the_providers_pool(monkeypatch):
    monkeypatch.setenv("BATCH_PROVIDER", "nebius")
    flow = batch_lifecycle("pooled", None, EMBEDDINGS, lambda context: [])
    assert flow.batch.op.pool == flow.results.op.pool == default_pool() == "batch_submit_nebius"
    assert flow.requests.op.pool is None  # writing shards touches no provider


def test_repo_instance_settings_limit_every_pool_to_one_slot(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        info = instance.event_log_storage.get_concurrency_info(default_pool())
        assert info.limit == 1 and info.using_default_limit
        assert instance.telemetry_enabled is False


def test_make_dev_installs_it_when_absent_and_keeps_yours(tmp_path):
    """`make dev` run for real, with `dagster` replaced by a command that prints its setting."""
    def make_dev(home):
        run = subprocess.run(
            ["make", "-s", "dev", "DAGSTER=sh -c 'echo $$DAGSTER_HOME' dagster"],
            cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True,
            text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    home = tmp_path / "home"
    assert make_dev(home) == str(home)
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")  # the user's own
    make_dev(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


def test_the_demo_installs_it_when_absent(tmp_path, monkeypatch):
    from assets.instance import prepare_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "demo-home"))
    home = prepare_dagster_home()  # what assets.demo.session.open_session calls first
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()


def test_a_run_under_the_pool_limit_completes_and_frees_its_slot(server, store, flow_name,
                                                                 tmp_path):
    from dagster import materialize
    from lifecycle_helpers import batch_resource, embedding_requests

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    flow = batch_lifecycle(flow_name, None, EMBEDDINGS,
                           lambda context: embedding_requests("pool", 3, {1}))
    resources = {"batch": batch_resource(server.base_url, max_attempts=2), "artifacts": store}
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        run = materialize(flow.assets, instance=instance, resources=resources)
        assert run.success  # batch, then results with a resubmission, one slot at a time
        meta = run.asset_materializations_for_node(f"{flow_name}_results")[0].metadata
        assert meta["attempts"].value == 2
        info = instance.event_log_storage.get_concurrency_info(flow.batch.op.pool)
        assert info.limit == 1 and info.claimed_slots == [] and info.pending_steps == []
