"""`dagster dev` on a fresh instance, and Debian's Chromium, for the browser tests (tests/ui).

* `prepare_instance(root, engine_url)` — the settings of a fresh checkout on the embedded
  default (a DAGSTER_HOME with the repo's dagster.yaml, the local engine at `engine_url`,
  artifacts, Qdrant and the flows' inboxes under `root`), every flow's partitions registered
  (``python -m assets.register_partitions``) and one embeddings partition materialized through
  Dagster's own CLI (``dagster asset materialize``), as a user would;
* `start_dagster_dev(env, log_path)` — ``dagster dev -w workspace.yaml`` (webserver and daemon)
  on a free loopback port, returned once ``/server_info`` answers and GraphQL reports the code
  location loaded; `UiServer.stop()` ends it;
* `launch_chromium(playwright)` — Chromium at ``$CHROMIUM`` or /usr/bin/chromium through
  Playwright's ``executable_path`` (no browser download); `MissingBrowser` says how to install.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium keeps dialling Google's services, which a
# closed network refuses; the UI itself is served from loopback.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCATION = "batch_workflows"  # workspace.yaml's location_name
REPO_PATH = f"__repository__@{LOCATION}"  # how the UI names a Definitions' repository in URLs
SHARDS = 40  # EMBEDDINGS_PYDOC_SHARDS: shard 1 of 40 is two short topics, a fast run
PARTITION = f"pydoc-1-of-{SHARDS}"
MATERIALIZED = ("embeddings_requests", "embeddings_batch", "embeddings_results", "embeddings_index")
READY_TIMEOUT = 180.0
# One process for the run's steps: the default multiprocess executor starts a process per step,
# each loading the code location again (a minute more on a 2-core machine, nothing more tested).
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'

_LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class MissingBrowser(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install it."""


class NotReady(RuntimeError):
    """`dagster dev` exited, or its code location did not load in time."""


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{output[-4000:]}")
    return output


def prepare_instance(root: Path, engine_url: str) -> dict[str, str]:
    """The environment of a fresh instance under `root` with `PARTITION` materialized."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    inboxes = {"EMBEDDINGS_WATCH_URI": "inbox", "DISTILLATION_WATCH_URI": "inbox-distillation",
               "MODERATION_WATCH_URI": "inbox-moderation"}
    for folder in inboxes.values():
        (root / folder).mkdir()
    env = {
        **os.environ,
        **{name: str(root / folder) for name, folder in inboxes.items()},
        "DAGSTER_HOME": str(home),
        "BATCH_PROVIDER": "local",
        "BATCH_BASE_URL": engine_url,
        "BATCH_POLL_INTERVAL": "0.5",
        "BATCH_ENGINE_DATA_DIR": str(root / "engine"),
        "BATCH_ARTIFACTS_URI": str(root / "artifacts"),
        "QDRANT_PATH": str(root / "qdrant"),
        "QDRANT_COLLECTION": "ui",
        "EMBEDDINGS_PYDOC_SHARDS": str(SHARDS),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "BATCH_API_KEY", "BATCH_BLOCKING"):
        env.pop(name, None)
    _run([sys.executable, "-m", "assets.register_partitions"], env, "register_partitions")
    out = _run([str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                "--select", ",".join(MATERIALIZED), "--partition", PARTITION,
                "--config-json", IN_PROCESS], env, "dagster asset materialize")
    if "RUN_SUCCESS" not in out:
        raise AssertionError(f"no RUN_SUCCESS from dagster asset materialize:\n{out[-4000:]}")
    return env


@dataclass
class UiServer:
    """A running `dagster dev`: its URL, process (its own process group) and log."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def graphql(self, query: str) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=10.0)
        response.raise_for_status()
        return response.json()

    def location_state(self) -> tuple[str, str]:
        """(load status, the location's type or its error) as GraphQL reports them."""
        body = self.graphql(_LOCATION_QUERY)
        for entry in body["data"]["workspaceOrError"]["locationEntries"]:
            if entry["name"] == LOCATION:
                return entry["loadStatus"], json.dumps(entry["locationOrLoadError"])
        return "MISSING", json.dumps(body)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until /server_info answers and the code location is loaded (and not an error)."""
        deadline = time.monotonic() + timeout
        state = ("not answering", "")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NotReady(f"dagster dev exited with {self.process.returncode}:\n"
                               f"{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/server_info", timeout=2.0).status_code == 200:
                    state = self.location_state()
            except httpx.TransportError:
                pass  # not listening yet
            if state[0] == "LOADED":
                if '"RepositoryLocation"' not in state[1]:
                    raise NotReady(f"the code location failed to load: {state[1]}\n"
                                   f"{self.log_text()[-4000:]}")
                return
            time.sleep(0.5)
        raise NotReady(f"dagster dev not ready after {timeout:.0f}s {state}:\n"
                       f"{self.log_text()[-4000:]}")

    def stop(self) -> None:
        """SIGINT to dagster dev's process group, as Ctrl-C (it stops its webserver, daemon and
        code server itself), then SIGKILL to whatever of the group is left after 30 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # its own session: pgid == pid
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # killed below
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already
        self.process.wait(timeout=30)


def start_dagster_dev(env: dict[str, str], log_path: Path) -> UiServer:
    """``dagster dev -w workspace.yaml`` on a free loopback port, once ready."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as one
        )
    ui = UiServer(f"http://127.0.0.1:{port}", process, log_path, env)
    try:
        ui.wait_ready()
    except BaseException:
        ui.stop()
        raise
    return ui


def launch_chromium(playwright):
    """Debian's Chromium through Playwright (a `playwright.sync_api.Playwright`)."""
    if not CHROMIUM.exists():
        raise MissingBrowser(
            f"Chromium not found at {CHROMIUM}: install Debian's package "
            "(apt-get install -y chromium; .ci/run does) or set CHROMIUM to its path")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
