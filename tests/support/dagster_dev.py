"""Real Dagster services for tests: ``dagster dev`` or ``dg dev`` (webserver + daemon) or
``dagster-daemon run`` on the repo's code location, each in its own process group so that
stopping it stops its code server and run workers too, and a GraphQL client for the webserver.

    with DagsterProcess.dev(home, env) as dev:
        dev.graphql("query { version }")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 1.0, log: Callable[[], str] | None = None) -> T:
    """Call `probe` until it returns something other than None (or False); fail after `timeout`
    seconds naming `what` (and the tail of `log`, when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(interval)
    tail = log()[-6000:] if log else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


class DagsterProcess:
    """A Dagster service subprocess on `home` (DAGSTER_HOME) with `env`; log in home/<name>.log."""

    def __init__(self, argv: list[str], home: Path, env: Mapping[str, str], name: str,
                 port: int | None = None):
        self.home, self.port, self.name = Path(home), port, name
        self.log_path = self.home / f"{name}.log"
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here on
        try:
            # A session of its own: stop() signals the group (code server and run workers too).
            self.process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        finally:
            log.close()

    @classmethod
    def dev(cls, home: Path, env: Mapping[str, str]) -> DagsterProcess:
        """``dagster dev -w workspace.yaml`` on a free loopback port."""
        port = free_port()
        argv = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml",
                "-h", "127.0.0.1", "-p", str(port)]
        return cls(argv, home, env, "dagster-dev", port)

    @classmethod
    def dg_dev(cls, home: Path, env: Mapping[str, str]) -> DagsterProcess:
        """``dg dev`` (the project's ``[tool.dg]``, the active venv) on a free loopback port."""
        port = free_port()
        argv = [str(BIN / "dg"), "dev", "--use-active-venv", "-h", "127.0.0.1", "-p", str(port)]
        return cls(argv, home, {**env, "VIRTUAL_ENV": str(BIN.parent)}, "dg-dev", port)

    @classmethod
    def daemon(cls, home: Path, env: Mapping[str, str]) -> DagsterProcess:
        """``dagster-daemon run -w workspace.yaml`` (no webserver)."""
        return cls([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], home, env,
                   "dagster-daemon")

    # -- the webserver ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.port is not None, "no webserver in this process"
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a GraphQL answer; AssertionError with the errors when there are any."""
        answer = httpx.post(f"{self.url}/graphql", timeout=60,
                            json={"query": query, "variables": dict(variables or {})}).json()
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def wait_until_loaded(self, timeout: float = 240.0) -> None:
        """Until the webserver answers and its code location has loaded (an error fails)."""
        query = """query { workspaceOrError { ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
        } } } }"""

        def loaded() -> bool:
            self.assert_running()
            try:
                data = self.graphql(query)
            except httpx.TransportError:
                return False
            entries = data["workspaceOrError"]["locationEntries"]
            for entry in entries:
                error = entry["locationOrLoadError"] or {}
                assert error.get("__typename") != "PythonError", error.get("message")
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        wait_for("the code location to load in the webserver", loaded, timeout, log=self.log_text)

    # -- process control --------------------------------------------------------------------
    def assert_running(self) -> None:
        code = self.process.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.log_text()[-6000:]}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the process group (as Ctrl-C would stop it), then SIGKILL to what is left."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The code server and run workers can outlive their parent's exit: end the group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already
        self.process.wait(timeout=30)

    def __enter__(self) -> DagsterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
