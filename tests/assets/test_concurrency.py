"""The submission pool: both assets that create batches are in it, named after the batch
resource's key; the lifecycle gives that pool (and no other) one slot in the instance unless the
instance already has a limit for it. The repo's dagster.yaml (copied into DAGSTER_HOME by
`make dev` and the demo) sets no pool default."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dagster import DagsterInstance

from batch_workflows.dagster import batch_lifecycle, ensure_pool
from batch_workflows.profiles import EMBEDDINGS

ROOT = Path(__file__).resolve().parents[2]


def test_batch_and_results_assets_share_the_pool_of_their_batch_resource(monkeypatch):
    monkeypatch.setenv("BATCH_PROVIDER", "nebius")  # read by nothing in the integration
    flow = batch_lifecycle("pooled", None, EMBEDDINGS, lambda context: [])
    assert flow.batch.op.pool == flow.results.op.pool == "batch_submit_batch"
    assert flow.requests.op.pool is None  # writing shards touches no provider
    other = batch_lifecycle("other", None, EMBEDDINGS, lambda context: [],
                            batch_resource_key="openai_batch")
    assert other.batch.op.pool == other.results.op.pool == "batch_submit_openai_batch"


def test_the_lifecycle_sets_its_own_pool_only_and_keeps_a_users_limit(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        assert instance.telemetry_enabled is False
        assert storage.get_concurrency_info("batch_submit_batch").limit is None  # no default
        assert ensure_pool(instance, "batch_submit_batch") is True
        assert storage.get_concurrency_info("batch_submit_batch").limit == 1
        assert storage.get_concurrency_keys() == {"batch_submit_batch"}  # no other pool
        storage.set_concurrency_slots("batch_submit_batch", 4)  # the user's choice
        assert ensure_pool(instance, "batch_submit_batch") is False
        assert storage.get_concurrency_info("batch_submit_batch").limit == 4


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
