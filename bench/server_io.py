"""Upload then download of a large file through the local batch server: peak server memory.

    .venv/bin/python -m bench.server_io [--scale full|small]

full: a 5 GB file; small: 50 MB. The server runs as a subprocess; its peak resident memory is
VmHWM from /proc/<pid>/status after both transfers (target < 300 MB), shown beside the RSS of
the idle server right after start (baseline). Upload and download throughput are shown beside
a raw disk copy of the same file in the same run (ratio = through the server / raw copy).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench import run_alone

WORK = Path(__file__).parent / ".work" / "server_io"
SIZES = {"full": 5_000_000_000, "small": 50_000_000}
CHUNK = 1 << 20
RSS_TARGET_MB = 300
MB = 1_000_000


def _make_file(path: Path, size: int) -> None:
    """A JSONL-looking file of exactly `size` bytes (content is irrelevant to the transfer)."""
    line = (b'{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": '
            b'{"model": "all-MiniLM-L6-v2", "input": "' + b"lorem ipsum " * 40 + b'"}}\n')
    block = line * (CHUNK // len(line) + 1)
    with path.open("wb") as handle:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            left -= len(piece)


def _copy_seconds(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    with src.open("rb") as a, dst.open("wb") as b:
        shutil.copyfileobj(a, b, CHUNK)
        b.flush()
        os.fsync(b.fileno())
    seconds = time.perf_counter() - started
    dst.unlink()
    return seconds


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing for {pid}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _multipart(path: Path, boundary: str, digest: hashlib._Hash | None) -> tuple[int, Iterator[bytes]]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                if digest is not None:
                    digest.update(chunk)
                yield chunk
        yield tail

    return len(head) + path.stat().st_size + len(tail), body()


def run(scale: str = "full") -> list[dict]:
    size = SIZES[scale]
    WORK.mkdir(parents=True, exist_ok=True)
    src, back, data_dir = WORK / "big.jsonl", WORK / "downloaded.jsonl", WORK / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = _free_port()
    server = None
    try:
        _make_file(src, size)
        copy_s = _copy_seconds(src, WORK / "copy.jsonl")
        exe = Path(sys.executable).parent / "batch-workflows"
        server = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir),
             "--max-upload-bytes", str(size + 1), "--log-level", "warning"],
            stdin=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        idle_kb = _status_kb(server.pid, "VmRSS")

        checks = scale == "small"  # hashing 5 GB twice would dominate the full run
        sent = hashlib.sha256() if checks else None
        boundary = "benchboundary7d1f"
        length, body = _multipart(src, boundary, sent)
        started = time.perf_counter()
        answer = httpx.post(
            f"{base}/v1/files", content=body, timeout=None,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Content-Length": str(length)},
        )
        upload_s = time.perf_counter() - started
        answer.raise_for_status()
        file_id = answer.json()["id"]
        assert answer.json()["bytes"] == size, answer.json()

        got = hashlib.sha256() if checks else None
        started = time.perf_counter()
        with httpx.stream("GET", f"{base}/v1/files/{file_id}/content", timeout=None) as stream:
            stream.raise_for_status()
            with back.open("wb") as handle:
                for chunk in stream.iter_bytes(CHUNK):
                    if got is not None:
                        got.update(chunk)
                    handle.write(chunk)
        download_s = time.perf_counter() - started
        assert back.stat().st_size == size
        if checks:
            assert got.hexdigest() == sent.hexdigest()  # type: ignore[union-attr]
        peak_kb = _status_kb(server.pid, "VmHWM")
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        for path in (src, back, WORK / "copy.jsonl"):
            path.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)

    label = f"{size // MB}MB"
    copy_rate, up_rate, down_rate = size / MB / copy_s, size / MB / upload_s, size / MB / download_s
    peak_mb, idle_mb = peak_kb / 1024, idle_kb / 1024
    return [
        {"name": f"server_io.peak_rss_{label}_mb", "value": round(peak_mb, 1), "unit": "MB",
         "baseline": round(idle_mb, 1), "ratio": round(peak_mb / idle_mb, 2),
         "target": f"< {RSS_TARGET_MB} MB (baseline: idle server RSS)",
         "met": peak_mb < RSS_TARGET_MB},
        {"name": f"server_io.upload_{label}_mb_per_s", "value": round(up_rate, 1),
         "unit": "MB/s", "baseline": round(copy_rate, 1), "ratio": round(up_rate / copy_rate, 2),
         "target": "reported (baseline: raw disk copy)"},
        {"name": f"server_io.download_{label}_mb_per_s", "value": round(down_rate, 1),
         "unit": "MB/s", "baseline": round(copy_rate, 1),
         "ratio": round(down_rate / copy_rate, 2), "target": "reported (baseline: raw disk copy)"},
    ]


if __name__ == "__main__":
    run_alone("server_io", run)
