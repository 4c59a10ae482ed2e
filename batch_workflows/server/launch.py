"""Starting the local engine for a caller: `batch-workflows serve` as a detached background
process, when nothing answers at its address yet.

    from batch_workflows.server.launch import ensure_engine, engine_is_up

    ensure_engine("http://127.0.0.1:8765/v1", ".data/engine")  # returns once /health answers
    assert engine_is_up("http://127.0.0.1:8765/v1")

The engine keeps its SQLite database, uploaded files and results under `data_dir`, with
`engine.log` (its output, appended), `engine.pid` and `engine.lock` (held while starting, so
that two callers start one engine). It keeps running after the caller exits (batches outlive
the process that submitted them, as at a real provider); stop it with the pid in `engine.pid`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from batch_workflows.errors import ConfigurationError
from batch_workflows.extras import require

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HEALTH_POLL = 0.25  # seconds between looks at /health while the engine starts
# Engines started by this process: kept referenced so that they are never reaped as garbage.
_STARTED_ENGINES: list[subprocess.Popen] = []


def health_url(base_url: str) -> str:
    """The engine's `/health` for its API root (`http://host:port/v1` → `http://host:port/health`)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/health"


def engine_is_up(base_url: str) -> bool:
    """Whether an engine answers 200 on /health at `base_url`."""
    try:
        return httpx.get(health_url(base_url), timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def listening(base_url: str) -> bool:
    """Whether anything accepts connections at `base_url` (an engine, a proxy, ...)."""
    host, port = _host_port(base_url)
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def ensure_engine(base_url: str, data_dir: str | os.PathLike[str], api_key: str | None = None,
                  timeout: float = 300.0) -> None:
    """Start `batch-workflows serve` in the background when nothing listens at `base_url`, and
    wait up to `timeout` seconds for its /health; ConfigurationError if it exits or stays silent.

    Something that listens but answers badly (a proxy, an engine still starting) is left
    alone: the client's retries deal with it. Only a loopback address is started on; `api_key`
    becomes the engine's bearer key (through its environment, never its command line).
    """
    if listening(base_url):
        return
    require("engine", "starting the local engine")
    host, port = _host_port(base_url)
    if host not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"nothing answers at {base_url} and it is not a loopback address; "
            "the embedded engine only starts on this machine")
    folder = Path(data_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / "engine.lock"):
        if listening(base_url):  # someone else started it while we waited for the lock
            wait_for_health(base_url, None, folder, timeout)
            return
        process = _start(host, port, folder, api_key)
        wait_for_health(base_url, process, folder, timeout)


def wait_for_health(base_url: str, process: subprocess.Popen | None, data_dir: Path,
                    timeout: float) -> None:
    """Return once /health answers; ConfigurationError if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_is_up(base_url):
            return
        if process is not None and process.poll() is not None:
            raise ConfigurationError(
                f"the embedded batch engine exited with code {process.returncode}; "
                f"see {data_dir / 'engine.log'}")
        time.sleep(HEALTH_POLL)
    raise ConfigurationError(
        f"the embedded batch engine did not answer at {health_url(base_url)} within "
        f"{timeout:g}s; see {data_dir / 'engine.log'}")


def _start(host: str, port: int, data_dir: Path, api_key: str | None) -> subprocess.Popen:
    """Launch the engine detached (its own session: batches outlive the caller); writes the pid."""
    command = [sys.executable, "-m", "batch_workflows.cli", "serve", "--host", host,
               "--port", str(port), "--data-dir", str(data_dir)]
    # The child's environment only: weights are local, so the hub is never asked.
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if api_key:
        env["BATCH_SERVER_API_KEY"] = api_key
    with open(data_dir / "engine.log", "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True)
    _STARTED_ENGINES.append(process)
    (data_dir / "engine.pid").write_text(str(process.pid))
    return process


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes, held for the `with` block."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
