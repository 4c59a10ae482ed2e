"""Benchmark: the Qdrant step of the embeddings flow, and the demo's time split.

Figures:
* indexing throughput of `batch_workflows.flows.embeddings.index.index_results` (read the results
  Parquet + chunk table, build payloads and uuid5 ids, upsert in batches, delete stale points)
  into a fresh local-mode collection, points/s, against a bare `qdrant-client`
  `upload_collection` of the same vectors, ids and payloads, already in memory, into another
  fresh collection in the same run — target ratio ≥ 0.9. Local mode commits every point to
  SQLite, so on a disk the figure is the disk's commit latency (~18 ms here) for both sides;
  the collections live on tmpfs (/dev/shm, when present) so that the ratio measures the
  software. Each side runs three times, alternating, and the best time counts;
* re-indexing the same results (a second materialization): points/s, nothing rewritten;
* the end-to-end `make demo` time split into engine time (engine start + submitting, waiting
  for and downloading the batches) and everything else, for the last run that embedded
  (`first_run`) and the last that re-attached (`rerun`), read from the timings that
  `python -m assets.demo` writes to .data/demo-timings.json (run `make demo` first; the figures
  are left out otherwise). Target: total < 600 s.

Data: N chunks of generated text with deterministic random 384-d vectors, written as a chunk
table and a results Parquet in the `batch_workflows.results` schema (64 inputs per request).
scale "full": N = 4,000; "small": N = 600. Run alone: `.venv/bin/python -m bench.qdrant_index [--scale small|full]`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import run_alone

WORK = Path(__file__).resolve().parent / ".work" / "qdrant_index"
DEMO_TIMINGS = Path(".data/demo-timings.json")
SHM = Path("/dev/shm")
DIM = 384
PER_REQUEST = 64
BATCH = 256


def generate(n: int) -> tuple[Path, Path]:
    """Chunk table + results Parquet for n chunks (deterministic)."""
    from batch_workflows.flows.embeddings.chunking import Chunk
    from batch_workflows.flows.embeddings.requests import ChunkTableWriter, group_chunks
    from batch_workflows.results import SCHEMA

    folder = WORK / f"n{n}"
    chunks_path, results_path = folder / "chunks.parquet", folder / "results.parquet"
    if chunks_path.exists() and results_path.exists():
        return chunks_path, results_path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    words = "batch vector token query result model document chunk index search".split()
    chunks = (
        Chunk(f"doc-{i // 8}", i % 8, " ".join(rng.choice(words, 40)), "bench", 0, 0, 40)
        for i in range(n)
    )
    table = ChunkTableWriter(chunks_path, "bench")
    rows: list[dict] = []
    for group in group_chunks(chunks, PER_REQUEST):
        cid = f"{group[0].chunk_id}+{len(group)}"
        table.add(cid, group)
        vecs = rng.standard_normal((len(group), DIM)).astype(np.float32)
        rows.append({
            "custom_id": cid, "status": "succeeded", "status_code": 200, "model": "bench",
            "embedding": vecs[0].tolist() if len(group) == 1 else None,
            "embeddings": vecs.tolist() if len(group) > 1 else None,
            "prompt_tokens": 40 * len(group), "completion_tokens": 0,
            "total_tokens": 40 * len(group),
        })
    table.close()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), results_path)
    return chunks_path, results_path


def _bare_inputs(chunks_path: Path, results_path: Path) -> tuple[list, np.ndarray, list]:
    """ids, vectors and payloads in memory, as a hand-written upload would hold them."""
    from batch_workflows.flows.embeddings.requests import read_chunk_table

    table = read_chunk_table(chunks_path).to_pylist()
    vectors = []
    for row in pq.read_table(results_path).to_pylist():
        vectors.extend(row["embeddings"] or [row["embedding"]])
    payloads = [{"text": r["text"], "document_id": r["document_id"],
                 "chunk_index": r["chunk_index"], "source": r["source"],
                 "partition": r["partition"], "model": "bench"} for r in table]
    return [r["point_id"] for r in table], np.asarray(vectors, dtype=np.float32), payloads


def _bare(folder: Path, ids: list, vectors: np.ndarray, payloads: list) -> float:
    from qdrant_client import QdrantClient, models

    shutil.rmtree(folder, ignore_errors=True)
    client = QdrantClient(path=str(folder))
    try:
        started = time.perf_counter()
        client.create_collection(
            "bench", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )
        client.upload_collection("bench", vectors=vectors, payload=payloads, ids=ids,
                                 batch_size=BATCH, wait=True)
        return time.perf_counter() - started
    finally:
        client.close()


def _ours(folder: Path, chunks_path: Path, results_path: Path, fresh: bool = True) -> float:
    from batch_workflows.flows.embeddings.index import index_results
    from batch_workflows.flows.embeddings.vectors import QdrantSettings, VectorIndex, open_client

    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    with open_client(QdrantSettings(path=str(folder), collection="bench")) as client:
        started = time.perf_counter()
        report = index_results(VectorIndex(client, "bench"), chunks_path, results_path,
                               "bench", "bench", batch_size=BATCH)
        elapsed = time.perf_counter() - started
        assert report.upserted + report.unchanged == report.chunks, report
    return elapsed


def run(scale: str = "full") -> list[dict]:
    n = 4_000 if scale == "full" else 600
    chunks_path, results_path = generate(n)
    ids, vectors, payloads = _bare_inputs(chunks_path, results_path)
    db = (SHM / "bw-bench-qdrant") if SHM.is_dir() else WORK
    bare_times, our_times = [], []
    try:
        for _ in range(3):
            bare_times.append(_bare(db / "bare-db", ids, vectors, payloads))
            our_times.append(_ours(db / "ours-db", chunks_path, results_path))
        rerun = _ours(db / "ours-db", chunks_path, results_path, fresh=False)
    finally:
        if db != WORK:
            shutil.rmtree(db, ignore_errors=True)
    ours, bare = n / min(our_times), n / min(bare_times)
    figures = [
        {
            "name": f"qdrant_index.index_{n}_points_per_s",
            "value": round(ours, 1),
            "unit": "points/s",
            "baseline": round(bare, 1),
            "ratio": round(ours / bare, 3),
            "target": f">= 0.9 x bare qdrant-client upload_collection (local mode on {db})",
            "met": ours / bare >= 0.9,
        },
        {
            "name": f"qdrant_index.reindex_unchanged_{n}_points_per_s",
            "value": round(n / rerun, 1),
            "unit": "points/s",
            "baseline": round(bare, 1),
            "ratio": round((n / rerun) / bare, 3),
            "target": "a re-run rewrites nothing",
        },
    ]
    record = json.loads(DEMO_TIMINGS.read_text()) if DEMO_TIMINGS.exists() else {}
    for run_name, t in (("first_run", record.get("first_run")), ("rerun", record.get("rerun"))):
        if not t:
            continue
        for key, label in (("total_seconds", "total"), ("engine_seconds", "engine"),
                           ("other_seconds", "everything_else")):
            figures.append({
                "name": f"qdrant_index.demo_{run_name}_{label}_s",
                "value": round(t[key], 1),
                "unit": "s",
                "baseline": None,
                "ratio": None,
                "target": "total < 600 s" if label == "total" else "(split of the total)",
            })
    return figures


if __name__ == "__main__":
    run_alone("qdrant_index", run)
