"""Start moto's standalone S3 server as a subprocess on a free loopback port.

A real HTTP server speaking the S3 protocol, not an in-process mock::

    with start_s3_server() as s3:
        s3.create_bucket("artifacts")
        ... S3Resource(endpoint_url=s3.endpoint_url, ...)

Credentials are dummies; `S3Server.env` holds them for code that reads the environment.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(port: int) -> list[str]:
    # Prefer the console script next to this interpreter (the project's .venv).
    script = Path(sys.executable).with_name("moto_server")
    if not script.exists():
        found = shutil.which("moto_server")
        script = Path(found) if found else None
    if script is not None:
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@dataclass
class S3Server:
    """A running moto S3 server."""

    endpoint_url: str
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)

    def client(self):  # -> botocore S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def start_s3_server(timeout: float = 30.0) -> Iterator[S3Server]:
    """Run moto_server on a free loopback port until the block exits."""
    port = _free_port()
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": REGION}
    # Its request log goes to a file: a pipe nobody reads would fill and stall the server.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(_command(port), env={**os.environ, **env},
                               stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"moto_server exited with {process.returncode}: {err}")
            try:
                if httpx.get(endpoint + "/", timeout=1.0).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer on {endpoint} in {timeout:g}s")
            time.sleep(0.1)
        yield S3Server(endpoint, process, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
