"""The project works with Dagster's `dg` tool: ``[tool.dg]`` in pyproject.toml names the same
code location as workspace.yaml (``assets.definitions``, location ``batch_workflows``);
``dg check defs`` loads it and ``dg dev`` serves it with its daemon, like ``dagster dev``."""

from __future__ import annotations

import os
import subprocess
import tomllib

from support.dagster_dev import BIN, ROOT, DagsterProcess, wait_for


def test_tool_dg_names_the_code_location_of_the_workspace():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    assert project["directory_type"] == "project"
    assert project["project"]["code_location_target_module"] == "assets.definitions"
    assert project["project"]["code_location_name"] == "batch_workflows"
    assert "location_name: batch_workflows" in (ROOT / "workspace.yaml").read_text()


def test_dg_check_defs_loads_every_definition(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path),
           "VIRTUAL_ENV": str(BIN.parent),  # the project's venv is the active one
           "EMBEDDINGS_WATCH_URI": str(tmp_path / "inbox")}
    out = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "All definitions loaded successfully" in out.stdout + out.stderr


def test_dg_dev_serves_the_three_groups_with_a_running_daemon(tmp_path):
    env = {**os.environ, "EMBEDDINGS_WATCH_URI": str(tmp_path / "inbox"),
           "BATCH_ARTIFACTS_URI": str(tmp_path / "artifacts")}
    with DagsterProcess.dg_dev(tmp_path, env) as dev:
        dev.wait_until_loaded()
        groups = dev.graphql("""query { assetNodes { groupName } }""")["assetNodes"]
        assert {g["groupName"] for g in groups} == {"embeddings", "distillation", "moderation"}

        def daemons_healthy() -> bool:
            health = dev.graphql("""query { instance { daemonHealth { allDaemonStatuses {
                daemonType healthy } } } }""")["instance"]["daemonHealth"]["allDaemonStatuses"]
            sensors = [d for d in health if d["daemonType"] == "SENSOR"]
            return bool(sensors) and all(d["healthy"] for d in sensors)

        wait_for("dg dev's daemon to run the sensors", daemons_healthy, 120, interval=2,
                 log=dev.log_text)
