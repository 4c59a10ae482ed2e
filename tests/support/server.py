"""Run `batch-workflows serve` as a real subprocess on a free loopback port.

    with start_server(tmp_path, completion_window="30s") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key)
        ...
        srv.kill(); srv.restart()   # crash and come back on the same data dir and port

Keyword options become command-line flags (`max_upload_bytes=10` -> `--max-upload-bytes 10`;
True -> a bare flag; None is skipped). `api_key` is passed through the environment, never argv.
The server's log (stdout and stderr, every restart appended) is at `.log_path`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

EXECUTABLE = Path(sys.executable).parent / "batch-workflows"
NO_AUTH_KEY = "local-no-auth"  # the openai SDK insists on some key; the server ignores it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerHandle:
    """A running server subprocess; a context manager that stops it on exit."""

    def __init__(self, tmp_path: Path, startup_timeout: float = 120.0, **cli_options: Any):
        tmp_path = Path(tmp_path)
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.port = int(cli_options.pop("port", None) or free_port())
        self.host = "127.0.0.1"
        self.data_dir = Path(cli_options.pop("data_dir", None) or tmp_path / "server-data")
        key = cli_options.pop("api_key", None)
        self.api_key: str = key or NO_AUTH_KEY
        self.auth_required = key is not None
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self.root_url = f"http://{self.host}:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.startup_timeout = startup_timeout
        self._options = cli_options
        self._env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "BATCH_SERVER_API_KEY": key or "",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    # -- process control ------------------------------------------------------------------
    def command(self) -> list[str]:
        argv = [str(EXECUTABLE), "serve", "--host", self.host, "--port", str(self.port),
                "--data-dir", str(self.data_dir)]
        for name, value in self._options.items():
            if value is None or value is False:
                continue
            flag = "--" + name.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        return argv

    def start(self) -> None:
        """Start the process and wait until /health answers."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log_text()[-4000:]}"
                )
            try:
                if httpx.get(f"{self.root_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not become healthy:\n{self.log_text()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Stop if running (SIGKILL) and start again on the same data dir and port."""
        self.kill()
        self.start()

    # -- inspection -----------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def peak_rss_bytes(self) -> int:
        """VmHWM of the server process (peak resident memory)."""
        return _status_kb(self.pid, "VmHWM") * 1024

    def rss_bytes(self) -> int:
        return _status_kb(self.pid, "VmRSS") * 1024

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def start_server(tmp_path: Path, **cli_options: Any) -> ServerHandle:
    """Start `batch-workflows serve` under `tmp_path` (see the module docstring)."""
    return ServerHandle(tmp_path, **cli_options)
