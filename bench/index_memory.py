"""Benchmark: memory of the embeddings index step (`embedding_index.index_results`) as a
partition grows.

Figures, each measured in a fresh process (peak RSS, VmHWM):
* index step at N and 5 N chunks, indexing in parts (the default) — targets < 400 MB and
  5 N / N ≤ 1.3;
* the same 5 N chunks read whole (`part_bytes` past the data: how the step worked before parts),
  the reference that shows what the parts save.

What is measured is the index step's own memory: reading the chunk table and the results,
matching vectors to chunks, building the payloads, handing batches of points to the index. The
index keeps nothing (`_HandOffIndex` counts the points it is given): Qdrant's memory is not the
step's (its local mode holds every point in RAM; a server holds them on its side). The
stale-point pass is off: it scrolls the store's points (tests cover it in parts).

Data (generated once under bench/.work/index_memory/): N chunks of 40 words with random
384-d float32 vectors, 64 chunks a request, in the chunk-table and results schemas.
scale "full": N = 200,000 (5 N: 1.5 GB of vectors), parts of INDEX_PART_BYTES; "small":
N = 10,000 with the part size scaled down alike (1.6 MB), so the smoke run works in parts too.
Run alone: `.venv/bin/python -m bench.index_memory [--scale small|full]`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench import peak_rss_mb, run_alone, run_child

WORK = Path(__file__).resolve().parent / ".work" / "index_memory"
DIM = 384
PER_REQUEST = 64


def generate(n: int) -> tuple[Path, Path]:
    """Chunk table + results Parquet for n chunks, written a row group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batch_workflows.flows.embeddings.chunking import Chunk
    from batch_workflows.flows.embeddings.requests import ChunkTableWriter, group_chunks
    from batch_workflows.results import SCHEMA

    folder = WORK / f"n{n}"
    chunks_path, results_path = folder / "chunks.parquet", folder / "results.parquet"
    if (folder / "done").exists():
        return chunks_path, results_path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    words = np.array("batch vector token query result model document chunk index search".split())
    chunks = (
        Chunk(f"doc-{i // 8}", i % 8, " ".join(rng.choice(words, 40)), "bench", 0, 0, 40)
        for i in range(n)
    )
    table = ChunkTableWriter(chunks_path, "bench")
    ids: list[str] = []
    sizes: list[int] = []

    def write_rows() -> None:
        # Vectors go from numpy to Arrow lists directly: no Python floats.
        flat = pa.array(rng.standard_normal(sum(sizes) * DIM, dtype=np.float32))
        vectors = pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, DIM, np.int32)), flat)
        per_row = pa.ListArray.from_arrays(pa.array(np.cumsum([0, *sizes], dtype=np.int32)), vectors)
        count = len(ids)
        columns = {f.name: pa.nulls(count, f.type) for f in SCHEMA}
        tokens = pa.array([40 * k for k in sizes], pa.int64())
        columns.update(
            custom_id=pa.array(ids), status=pa.array(["succeeded"] * count),
            status_code=pa.array([200] * count, pa.int32()), model=pa.array(["bench"] * count),
            embeddings=per_row, prompt_tokens=tokens, total_tokens=tokens,
            completion_tokens=pa.array([0] * count, pa.int64()),
        )
        results.write_table(pa.table(columns, schema=SCHEMA))
        ids.clear()
        sizes.clear()

    with pq.ParquetWriter(results_path, SCHEMA) as results:
        for group in group_chunks(chunks, PER_REQUEST):
            ids.append(f"{group[0].chunk_id}+{len(group)}")
            sizes.append(len(group))
            table.add(ids[-1], group)
            if len(ids) == 256:
                write_rows()
        if ids:
            write_rows()
    table.close()
    (folder / "done").write_text("ok")
    return chunks_path, results_path


def _child(n: int, part_bytes: int) -> dict:
    """Runs in a fresh process: one index pass, printed as JSON."""
    from batch_workflows.flows.embeddings.index import index_results
    from batch_workflows.flows.embeddings.vectors import VectorIndex

    class _HandOffIndex(VectorIndex):
        """Takes every batch of points index_results hands over and keeps none of them."""

        def __init__(self) -> None:
            super().__init__(client=None, collection="bench")
            self.points = 0

        def ensure_collection(self, dimension: int) -> bool:
            return True

        def upsert(self, ids, vectors, payloads) -> int:  # type: ignore[no-untyped-def]
            assert len(ids) == len(vectors) == len(payloads)
            self.points += len(ids)
            return len(ids)

    chunks_path, results_path = generate(n)
    index = _HandOffIndex()
    baseline_mb = peak_rss_mb()  # the interpreter and the imports
    start = time.perf_counter()
    report = index_results(
        index, chunks_path, results_path, "bench", "bench", delete_stale=False,
        skip_unchanged=False, part_bytes=part_bytes,
    )
    assert index.points == report.upserted == report.chunks == n, report
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb(),
            "imports_mb": baseline_mb}


def run(scale: str = "full") -> list[dict]:
    n = 200_000 if scale == "full" else 10_000
    big = 5 * n
    generate(n)
    generate(big)
    from batch_workflows.flows.embeddings.index import INDEX_PART_BYTES

    part = INDEX_PART_BYTES * n // 200_000  # the full scale's part size, scaled with N
    small, large = run_child("index_memory", n, part), run_child("index_memory", big, part)
    whole = run_child("index_memory", big, 1 << 62)  # one part: the table read whole
    return [
        {
            "name": f"index_memory.peak_rss_{n // 1000}k_chunks_mb",
            "value": round(small["peak_mb"], 1),
            "unit": "MB",
            "baseline": round(small["imports_mb"], 1),
            "ratio": None,
            "target": "< 400 MB (baseline: the process before indexing)",
            "met": small["peak_mb"] < 400,
            "seconds": round(small["seconds"], 1),
        },
        {
            "name": f"index_memory.peak_rss_{big // 1000}k_chunks_mb",
            "value": round(large["peak_mb"], 1),
            "unit": "MB",
            "baseline": round(small["peak_mb"], 1),
            "ratio": round(large["peak_mb"] / small["peak_mb"], 3),
            "target": f"< 400 MB and <= 1.3 x the {n // 1000}k figure",
            "met": large["peak_mb"] < 400 and large["peak_mb"] / small["peak_mb"] <= 1.3,
            "seconds": round(large["seconds"], 1),
        },
        {
            "name": f"index_memory.peak_rss_{big // 1000}k_chunks_read_whole_mb",
            "value": round(whole["peak_mb"], 1),
            "unit": "MB",
            "baseline": round(large["peak_mb"], 1),
            "ratio": round(whole["peak_mb"] / large["peak_mb"], 3),
            "target": "reference: the chunk table read whole, as before parts",
            "seconds": round(whole["seconds"], 1),
        },
    ]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(int(argv[1]), int(argv[2]))))
    else:
        run_alone("index_memory", run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
