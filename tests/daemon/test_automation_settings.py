"""The settings the daemon tests lean on, as a user sets them: SENSOR_INTERVAL_SECONDS reaches
every sensor of the code location, RUN_EXECUTOR its executor; bad values are named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.dagster_dev import ROOT

from assets.automation import sensor_interval
from assets.definitions import build_executor
from batch_workflows.errors import ConfigurationError

LOAD = (
    "import json\n"
    "from assets.definitions import defs\n"
    "repo = defs.get_repository_def()\n"
    "print(json.dumps({'intervals': {s.name: s.minimum_interval_seconds for s in repo.sensor_defs},"
    " 'executor': repo.get_all_jobs()[0].executor_def.name}))\n"
)


def test_the_settings_reach_every_sensor_and_the_executor(tmp_path):
    env = {**os.environ, "SENSOR_INTERVAL_SECONDS": "3", "RUN_EXECUTOR": "in_process",
           "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(loaded["intervals"].values()) == {3}, loaded["intervals"]
    assert loaded["executor"] == "in_process"


def test_unset_settings_keep_each_default_and_bad_ones_are_named(monkeypatch):
    monkeypatch.delenv("SENSOR_INTERVAL_SECONDS", raising=False)
    monkeypatch.delenv("RUN_EXECUTOR", raising=False)
    assert sensor_interval(15) == 15 and build_executor() is None
    for bad in ("0", "fast", "1.5"):
        monkeypatch.setenv("SENSOR_INTERVAL_SECONDS", bad)
        with pytest.raises(ConfigurationError, match="SENSOR_INTERVAL_SECONDS"):
            sensor_interval(15)
    monkeypatch.setenv("RUN_EXECUTOR", "threads")
    with pytest.raises(ConfigurationError, match="RUN_EXECUTOR"):
        build_executor()
