"""Through the Dagster CLI: repeated materializations submit once; an interrupted wait cancels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.wire import is_terminal

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

DEFS = '''
import os
from dagster import Definitions, StaticPartitionsDefinition, in_process_executor
from batch_workflows.dagster import batch_lifecycle
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.dagster import ArtifactStore
from batch_workflows.dagster import BatchResource

N = int(os.environ["FLOW_REQUESTS"])

def build(context):
    for i in range(N):
        yield {"custom_id": f"c{i}", "method": "POST", "url": "/v1/embeddings",
               "body": {"model": "all-MiniLM-L6-v2", "input": f"cli text {i}"}}

flow = batch_lifecycle(os.environ["FLOW_NAME"], StaticPartitionsDefinition(["k"]), EMBEDDINGS, build)
# In-process steps: each step subprocess costs seconds on a small machine.
defs = Definitions(
    executor=in_process_executor,
    assets=flow.assets, asset_checks=flow.checks, sensors=flow.sensors,
    resources={
        "batch": BatchResource(provider="local", base_url=os.environ["FLOW_URL"],
                               start_local_engine=False, poll_interval_seconds=0.2),
        "artifacts": ArtifactStore(base_uri=os.environ["FLOW_ARTIFACTS"]),
    },
)
'''

pytestmark = pytest.mark.skipif(not DAGSTER.exists(), reason="dagster CLI not installed")


def _cli(tmp_path, server, name, n):
    (tmp_path / "cli_defs.py").write_text(DEFS)
    (tmp_path / "home").mkdir(exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "FLOW_NAME": name,
           "FLOW_URL": server.base_url, "FLOW_ARTIFACTS": str(tmp_path / "artifacts"),
           "FLOW_REQUESTS": str(n), "PYTHONPATH": str(ROOT)}
    argv = [str(DAGSTER), "asset", "materialize", "-f", str(tmp_path / "cli_defs.py"),
            "--select", f"{name}_requests,{name}_batch,{name}_results", "--partition", "k"]
    return argv, env


def _ours(server, name):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        return list(lc.iter_lifecycle_batches(client, asset=name))


def test_cli_materialize_twice_submits_once(server, tmp_path, flow_name):
    argv, env = _cli(tmp_path, server, flow_name, 4)
    for _ in range(2):
        out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    ours = _ours(server, flow_name)
    assert len(ours) == 1 and ours[0]["status"] == "completed"
    assert (tmp_path / "artifacts" / flow_name / "k" / "results.parquet").is_file()


def test_interrupting_the_waiting_run_cancels_its_batches(server, tmp_path, flow_name):
    argv, env = _cli(tmp_path, server, flow_name, 20000)  # minutes of work: it is still waiting
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    waiting = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if f"{flow_name}_results" in line and "attempt 1:" in line:
                waiting.set()  # the results step reported progress: it is inside its wait

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(timeout=240), "".join(lines[-50:])
        assert not is_terminal(_ours(server, flow_name)[0])
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert proc.returncode != 0
    batch = _ours(server, flow_name)[0]
    assert batch["status"] in ("cancelling", "cancelled"), output[-3000:]
    assert "cancelling 1 batch" in output
