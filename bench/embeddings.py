"""Embeddings through the local batch server vs SentenceTransformer.encode in-process.

    .venv/bin/python -m bench.embeddings [--scale full|small]

full: 20,000 requests of mixed length (short sentences to long paragraphs past the model's
window); small: 1,000. The server leg is upload → batch → poll → download of the output file,
timed after a warm-up request has loaded the model in the server (the baseline's model load is
not timed either). The baseline is `encode` on the same texts with the same forward batch size
as the backend, in two interleaved halves run before and after the server leg (so background
load on a shared machine hits both legs alike). ratio = baseline seconds / server seconds
(higher is better, target ≥ 0.85). cpu_ratio compares CPU seconds (server process + client)
instead, which is steadier when other processes compete for the cores.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

from bench import run_alone

ROOT = Path(__file__).resolve().parent.parent
# One folder per run: several benchmark runs may share the checkout.
WORK = Path(__file__).parent / ".work" / "embeddings" / f"run-{os.getpid()}"
SIZES = {"full": 20_000, "small": 1_000}
MODEL = "all-MiniLM-L6-v2"
TARGET = 0.85

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has when who will more no if "
    "out so said what up its about into than them can only other new some could time these two "
    "may then do first any my now such like our over man me even most made after also did many "
    "before must through back years where much your way well down should because each just those "
    "people how market report quarter revenue growth customer model batch vector search river "
    "mountain library engine request server window language science history music garden city"
).split()


def texts(n: int, seed: int = 11) -> list[str]:
    """Mixed lengths: 60 % sentences (5-20 words), 30 % passages (20-60), 10 % paragraphs (100-300)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        k = (
            rng.randint(5, 20)
            if r < 0.6
            else rng.randint(20, 60)
            if r < 0.9
            else rng.randint(100, 300)
        )
        words = [rng.choice(_WORDS) for _ in range(k)]
        out.append(" ".join(words).capitalize() + ".")
    return out


def _write_requests(path: Path, items: list[str]) -> None:
    with path.open("w") as fh:
        for i, text in enumerate(items):
            body = {"model": MODEL, "input": text}
            line = {"custom_id": f"t-{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
            fh.write(json.dumps(line) + "\n")


class _Baseline:
    """SentenceTransformer.encode in this process, the model loaded before any timing.

    The texts are encoded in two interleaved halves, one before and one after the server leg,
    so that load from other processes on a shared machine hits both legs alike.
    """

    def __init__(self, items: list[str]):
        from batch_workflows.backends.embeddings import EmbeddingBackend

        backend = EmbeddingBackend()
        self.model = backend.load()  # the same device and batch size the server's backend picks
        self.batch_size = int(backend.batch_size or 0)
        self.model.encode(items[:64], batch_size=self.batch_size)  # warm-up
        self.items = items
        self.vectors: dict[int, object] = {}
        self.seconds = self.cpu_seconds = 0.0

    def encode_half(self, half: int) -> None:
        idx = list(range(half, len(self.items), 2))
        start, cpu = time.perf_counter(), time.process_time()
        out = self.model.encode([self.items[i] for i in idx], batch_size=self.batch_size)
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu
        self.vectors.update(zip(idx, out, strict=True))


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server(items: list[str], work: Path) -> tuple[float, float, Path, dict]:
    import httpx
    import openai

    sys.path.insert(0, str(ROOT / "tests"))
    from support.server import start_server

    requests = work / "requests.jsonl"
    _write_requests(requests, items)
    out_path = work / "output.jsonl"
    (work / "srv").mkdir(parents=True, exist_ok=True)
    with start_server(work / "srv") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=2)
        # Load the model in the server before timing: the baseline's load is not timed either.
        client.embeddings.create(model=MODEL, input="warm-up")
        start, cpu = time.perf_counter(), _cpu_seconds(srv.pid) + time.process_time()
        with requests.open("rb") as fh:
            uploaded = client.files.create(file=fh, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.2)
            batch = client.batches.retrieve(batch.id)
        if batch.status != "completed" or not batch.output_file_id:
            raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
        with httpx.stream(
            "GET",
            f"{srv.base_url}/files/{batch.output_file_id}/content",
            headers=srv.headers(),
            timeout=600,
        ) as resp:
            resp.raise_for_status()
            with out_path.open("wb") as fh:
                for block in resp.iter_bytes(1 << 20):
                    fh.write(block)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(srv.pid) + time.process_time() - cpu
        info = {"counts": batch.request_counts.model_dump() if batch.request_counts else None}
    return elapsed, cpu, out_path, info


def _check(out_path: Path, baseline_vectors: dict, n: int) -> float:
    """Every custom_id once, 384 finite values; returns the worst cosine vs the baseline."""
    import numpy as np

    base = baseline_vectors
    seen: set[int] = set()
    worst = 1.0
    with out_path.open() as fh:
        for line in fh:
            obj = json.loads(line)
            i = int(obj["custom_id"][2:])
            assert i not in seen, f"duplicate {obj['custom_id']}"
            seen.add(i)
            vec = np.asarray(obj["response"]["body"]["data"][0]["embedding"], dtype=np.float32)
            assert vec.shape == (384,) and np.isfinite(vec).all()
            cos = float(vec @ base[i] / (np.linalg.norm(vec) * np.linalg.norm(base[i])))
            worst = min(worst, cos)
    assert len(seen) == n, f"{n - len(seen)} requests missing from the output"
    return worst


def run(scale: str = "full") -> list[dict]:
    n = SIZES[scale]
    WORK.mkdir(parents=True, exist_ok=True)
    items = texts(n)
    baseline = _Baseline(items)
    baseline.encode_half(0)
    server_s, server_cpu, out_path, info = _server(items, WORK)
    baseline.encode_half(1)
    base_s = baseline.seconds
    worst = _check(out_path, baseline.vectors, n)
    shutil.rmtree(WORK, ignore_errors=True)  # the output alone is ~150 MB at full scale
    device = "cuda" if _cuda() else "cpu"
    return [
        {
            "name": f"embeddings_server_vs_encode_{device}",
            "value": round(n / server_s, 2),
            "unit": "requests/s",
            "baseline": round(n / base_s, 2),
            "ratio": round(base_s / server_s, 3),
            "target": TARGET,
            "met": base_s / server_s >= TARGET,
            "requests": n,
            "server_seconds": round(server_s, 2),
            "encode_seconds": round(base_s, 2),
            "encode_batch_size": baseline.batch_size,
            "server_cpu_seconds": round(server_cpu, 2),
            "encode_cpu_seconds": round(baseline.cpu_seconds, 2),
            "cpu_ratio": round(baseline.cpu_seconds / server_cpu, 3),
            "worst_cosine_vs_encode": round(worst, 6),
            **info,
        }
    ]


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    run_alone("embeddings", run)
