"""Set and forget with the real daemon: under ``dagster dev`` in non-blocking mode, a run that
materializes a partition's requests and batch returns; the daemon's batch sensor then launches
the results run and the index follows by its automation condition, nobody waiting in a run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DefaultSensorStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from support.daemon_env import dagster_home, flow_env
from support.dagster_dev import BIN, ROOT, DagsterProcess, wait_for

from assets.automation import AUTOMATION_SENSOR_NAME
from assets.flows import load_flow
from batch_workflows.flows.embeddings.vectors import QdrantSettings, VectorIndex, open_client
from batch_workflows.flows.moderation.evaluate import SAMPLE_BACKLOG

SHARDS = 41  # pydoc-1-of-41: two short topics, and partitions no other test submits
PARTITION = f"pydoc-1-of-{SHARDS}"
DEADLINE = 300.0  # seconds for the daemon to carry the batch through results to the index


def test_every_sensor_and_schedule_is_on_by_default_and_so_is_automation():
    from assets.definitions import defs

    repo = defs.get_repository_def()
    sensors = {s.name: s.default_status for s in repo.sensor_defs}
    assert sensors[AUTOMATION_SENSOR_NAME] == DefaultSensorStatus.RUNNING
    assert "default_automation_condition_sensor" not in sensors  # ours covers every asset
    assert {n for n, status in sensors.items() if status != DefaultSensorStatus.RUNNING} == set()
    assert all(s.default_status.value == "RUNNING" for s in repo.schedule_defs)


@pytest.fixture(scope="module")
def dev(tmp_path_factory, server):
    """``dagster dev`` on a fresh DAGSTER_HOME with the repo's dagster.yaml."""
    root = tmp_path_factory.mktemp("set-and-forget")
    env = flow_env(root, server, SHARDS)
    with DagsterProcess.dev(dagster_home(root), env) as process:
        yield process


def _materialized(instance: DagsterInstance, asset: str) -> bool:
    return PARTITION in instance.get_materialized_partitions(AssetKey(asset))


def _runs_of(instance: DagsterInstance, asset: str) -> list:
    runs = instance.get_runs(RunsFilter(tags={"dagster/partition": PARTITION}))
    return [r for r in runs if AssetKey(asset) in (r.asset_selection or set())]


def test_the_daemon_collects_the_batch_and_the_index_follows(dev):
    with DagsterInstance.from_config(str(dev.home)) as instance:
        assert load_flow("embeddings").register_partitions(instance, [PARTITION]) == [PARTITION]
        submit = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
             "--select", "embeddings_requests,embeddings_batch", "--partition", PARTITION],
            cwd=ROOT, env=dev.env, capture_output=True, text=True, timeout=300)
        assert submit.returncode == 0, submit.stderr[-3000:]
        assert _materialized(instance, "embeddings_batch")

        def index_run_finished():
            dev.assert_running()
            runs = _runs_of(instance, "embeddings_index")
            return runs[0] if runs and runs[0].is_finished else None

        index_run = wait_for(f"the embeddings_index run of {PARTITION}", index_run_finished,
                             DEADLINE, log=dev.log_text)
        assert index_run.is_success, dev.log_text()[-4000:]
        assert index_run.tags["dagster/sensor_name"] == AUTOMATION_SENSOR_NAME
        assert _materialized(instance, "embeddings_index")
        (results_run,) = _runs_of(instance, "embeddings_results")  # the sensor's, requested once
        assert results_run.tags["dagster/sensor_name"] == "embeddings_batch_sensor"
        assert results_run.is_success
    root = Path(dev.env["QDRANT_PATH"])
    with open_client(QdrantSettings(path=str(root), collection="daemon")) as client:
        assert VectorIndex(client, "daemon").count(PARTITION) > 0


MODERATION_DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]
STOP_SENSOR = """mutation($origin: String!, $selector: String!) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {
    __typename ... on PythonError { message } } }"""
SENSOR_IDS = """query($name: String!) { sensorOrError(sensorSelector: {
  repositoryLocationName: "batch_workflows", repositoryName: "__repository__", sensorName: $name})
  { ... on Sensor { jobOriginId sensorState { selectorId } } } }"""
LAUNCH_BACKFILL = """mutation($days: [String!], $assets: [AssetKeyInput!]) {
  launchPartitionBackfill(backfillParams: {partitionNames: $days, assetSelection: $assets}) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


def _stop_sensor(dev: DagsterProcess, name: str) -> None:
    sensor = dev.graphql(SENSOR_IDS, {"name": name})["sensorOrError"]
    answer = dev.graphql(STOP_SENSOR, {"origin": sensor["jobOriginId"],
                                       "selector": sensor["sensorState"]["selectorId"]})
    assert answer["stopSensor"]["__typename"] == "StopSensorMutationResult", answer


def test_a_moderation_backfill_through_graphql_completes_the_same_way(dev):
    dev.wait_until_loaded()
    # The days arrive as files; the inbox sensor would launch them itself: this test is the
    # backfill's, so that sensor is stopped first, as an operator would in the UI.
    _stop_sensor(dev, "moderation_inbox_sensor")
    inbox = Path(dev.env["MODERATION_WATCH_URI"])
    inbox.mkdir(parents=True, exist_ok=True)
    for day in MODERATION_DAYS:
        shutil.copy(SAMPLE_BACKLOG / f"{day}.jsonl", inbox)
    answer = dev.graphql(LAUNCH_BACKFILL, {
        "days": MODERATION_DAYS,
        "assets": [{"path": ["moderation_requests"]}, {"path": ["moderation_batch"]}]})
    launched = answer["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    with DagsterInstance.from_config(str(dev.home)) as instance:
        backfill = wait_for("the backfill to finish", lambda: _finished_backfill(
            instance, launched["backfillId"]), DEADLINE, log=dev.log_text)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS

        def all_verdicts() -> bool:
            dev.assert_running()
            done = instance.get_materialized_partitions(AssetKey("moderation_verdicts"))
            return set(MODERATION_DAYS) <= done

        wait_for("moderation_verdicts of the three days", all_verdicts, DEADLINE,
                 log=dev.log_text)
        runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name":
                                                  "moderation_batch_sensor"}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == MODERATION_DAYS


def _finished_backfill(instance: DagsterInstance, backfill_id: str):
    backfill = instance.get_backfill(backfill_id)
    return backfill if backfill and backfill.status != BulkActionStatus.REQUESTED else None
