"""Production storage: deploy/dagster.postgres.yaml against a real PostgreSQL server. A partition
materialized through Dagster's CLI lands in Postgres, and the daemon's batch sensor keeps its
cursor across a daemon restart (the results run it requested is not requested again)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, RunsFilter
from support.daemon_env import dagster_home, flow_env
from support.dagster_dev import BIN, ROOT, DagsterProcess, wait_for
from support.postgres import PostgresServer

from assets.flows import load_flow

SAMPLE = ROOT / "deploy" / "dagster.postgres.yaml"
SHARDS = 42  # pydoc-1-of-42: this test's own partition on the shared engine
PARTITION = f"pydoc-1-of-{SHARDS}"
SENSOR = "embeddings_batch_sensor"


@pytest.fixture(scope="session")
def postgres():
    with PostgresServer.start() as pg:
        yield pg


def test_the_sample_reads_every_credential_from_the_environment():
    db = yaml.safe_load(SAMPLE.read_text())["storage"]["postgres"]["postgres_db"]
    for field in ("username", "password", "hostname", "port", "db_name"):
        assert set(db[field]) == {"env"}, field
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1's bare postgresql is psycopg 3
    repo = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    # Neither changes every pool of the instance: the lifecycle sets its own pool's limit.
    assert "concurrency" not in yaml.safe_load(SAMPLE.read_text()) and "concurrency" not in repo


def _sensor_state(instance: DagsterInstance):
    states = instance.all_instigator_state()
    return next((s for s in states if s.name == SENSOR), None)


def _requested(instance: DagsterInstance) -> str | None:
    """The submission marker the sensor's cursor says it handed to a results run."""
    state = _sensor_state(instance)
    cursor = state and state.instigator_data and state.instigator_data.cursor
    return json.loads(cursor).get("requested", {}).get(PARTITION) if cursor else None


def _ticks_since(instance: DagsterInstance, since: float) -> int:
    state = _sensor_state(instance)
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
    return sum(1 for t in ticks if t.timestamp > since and t.status.value != "STARTED")


def _results_runs(instance: DagsterInstance) -> list:
    return instance.get_runs(RunsFilter(tags={"dagster/partition": PARTITION,
                                              "dagster/sensor_name": SENSOR}))


def test_a_postgres_instance_keeps_the_sensor_cursor_across_a_daemon_restart(
        tmp_path, server, postgres, monkeypatch):
    home = dagster_home(tmp_path, SAMPLE)
    assert postgres.password not in (home / "dagster.yaml").read_text()
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)  # this process's instance reads them too
    env = {**flow_env(tmp_path, server, SHARDS), **postgres.env()}
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        load_flow("embeddings").register_partitions(instance, [PARTITION])
        with DagsterProcess.daemon(home, env) as first:  # loads while the CLI submits
            submit = subprocess.run(
                [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                 "--select", "embeddings_requests,embeddings_batch", "--partition", PARTITION],
                cwd=ROOT, env={**env, "DAGSTER_HOME": str(home)}, capture_output=True,
                text=True, timeout=300)
            assert submit.returncode == 0, submit.stderr[-3000:]
            materialized = instance.get_materialized_partitions(AssetKey("embeddings_batch"))
            assert PARTITION in materialized
            marker = wait_for(f"{SENSOR} to request the results of {PARTITION}",
                              lambda: _requested(instance), 240, log=first.log_text)
        assert len(_results_runs(instance)) == 1
        restarted = time.time()
        assert _requested(instance) == marker  # stored in Postgres, not in the daemon

        with DagsterProcess.daemon(home, env) as second:
            wait_for(f"a {SENSOR} tick after the restart",
                     lambda: _ticks_since(instance, restarted) >= 1, 240, log=second.log_text)
            second.assert_running()
        assert _requested(instance) == marker
        assert len(_results_runs(instance)) == 1  # not requested again after the restart
        # The submission pool got its one slot in Postgres, set by the lifecycle itself.
        assert instance.event_log_storage.get_concurrency_info("batch_submit_batch").limit == 1
