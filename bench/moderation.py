"""Benchmark: a day's results → moderation verdict tables (`flows.moderation.verdicts`).

Data (generated once under bench/.work/moderation/, reused while the generator is unchanged): an
item table of N items (short texts, half labelled) and the results Parquet of the llm strategy
in the lifecycle's schema, rows in a scrambled order: JSON verdicts as a judge writes them,
1 % of them not parsing, 1 % failed requests, 0.1 % missing.

Figures (every run in a fresh process):
* verdicts of N results (item table + results → verdicts.parquet + flagged.parquet + figures),
  rows/s, against the bare work: reading the same results file's content column and
  ``orjson.loads`` of every answer — recorded, no target (the verdicts also join, check every
  field, score against labels and write two tables);
* peak RSS (VmHWM) at N/5 and N — targets < 400 MB at N and N / (N/5) ≤ 1.3 (flat memory).

scale "full": N = 1,000,000; "small": N = 20,000 (a smoke run).
Run alone: `.venv/bin/python -m bench.moderation [--scale small|full]`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench import peak_rss_mb, run_alone, run_child

WORK = Path(__file__).resolve().parent / ".work" / "moderation"
GENERATOR_VERSION = "1"
CHUNK = 100_000
TEXTS = ["Thanks for the quick reply, that fixed my problem.", "You absolute moron, read it.",
         "How do I reset my router password?", "I know where you live, watch your back."]
ANSWERS = ['{"flagged": false, "categories": [], "rationale": "ordinary content"}',
           '{"flagged": true, "categories": ["harassment"], "rationale": "an insult"}',
           '{"flagged": false, "categories": [], "rationale": "a support question"}',
           '{"flagged": true, "categories": ["harassment", "harassment/threatening", '
           '"violence"], "rationale": "a threat"}']


def generate(n: int) -> dict[str, Path]:
    """Write (or reuse) the item table and results of n items; returns their paths."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batch_workflows.flows.moderation.items import ITEM_SCHEMA
    from batch_workflows.results.schema import SCHEMA

    folder = WORK / f"v{GENERATOR_VERSION}-{n}"
    paths = {"items": folder / "items.parquet", "results": folder / "results.parquet"}
    if (folder / "done").exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    labels = [[], ["harassment"], [], ["harassment", "harassment/threatening", "violence"]]
    with pq.ParquetWriter(paths["items"], ITEM_SCHEMA) as w:
        for start in range(0, n, CHUNK):
            i = np.arange(start, min(n, start + CHUNK))
            w.write_table(pa.table({
                "custom_id": [f"item:{k}" for k in i], "id": [str(k) for k in i],
                "text": [TEXTS[k % 4] for k in i], "created_at": ["2025-03-01T00:00:00Z"] * len(i),
                "labels": [labels[k % 4] if k % 2 else None for k in i],
                "line": (i + 1).tolist()}, schema=ITEM_SCHEMA))
    order = np.random.default_rng(7).permutation(n)
    order = order[order % 1000 != 999]  # 0.1 % missing: no row at all
    with pq.ParquetWriter(paths["results"], SCHEMA) as w:
        for start in range(0, len(order), CHUNK):
            i = order[start:start + CHUNK]
            failed = i % 100 == 1
            content = [None if f else ("Sorry, I can't." if k % 100 == 2 else ANSWERS[k % 4])
                       for k, f in zip(i.tolist(), failed.tolist(), strict=True)]
            cols = {f.name: pa.nulls(len(i), f.type) for f in SCHEMA}
            cols.update({
                "custom_id": pa.array([f"item:{k}" for k in i]),
                "status": pa.array(np.where(failed, "failed", "succeeded").tolist()),
                "status_code": pa.array(np.where(failed, 500, 200), pa.int32()),
                "error_code": pa.array([("server_error" if f else None) for f in failed.tolist()]),
                "model": pa.array(["SmolLM2-135M-Instruct"] * len(i)),
                "content": pa.array(content, pa.string()),
                "finish_reason": pa.array([None if f else "stop" for f in failed.tolist()]),
            })
            w.write_table(pa.table(cols, schema=SCHEMA))
    (folder / "done").write_text("ok\n")
    return paths


def _child(task: str, n: int) -> dict:
    paths = generate(n)
    started = time.perf_counter()
    if task == "bare":
        import orjson

        from batch_workflows.parquet import open_parquet

        rows = 0
        for batch in open_parquet(paths["results"]).iter_batches(columns=["content"]):
            for content in batch.column(0).to_pylist():
                rows += 1
                if content:
                    try:
                        orjson.loads(content)
                    except orjson.JSONDecodeError:
                        pass  # a refusal: the bare pass only reads
        extra: dict = {"rows": rows}
    else:
        from batch_workflows.flows.moderation.judges import LlmJudge
        from batch_workflows.flows.moderation.taxonomy import load_policy
        from batch_workflows.flows.moderation.verdicts import write_verdicts

        with tempfile.TemporaryDirectory(prefix="bw-bench-verdicts-") as tmp:
            report = write_verdicts(paths["items"], paths["results"],
                                    LlmJudge(load_policy(), "SmolLM2-135M-Instruct"),
                                    Path(tmp) / "v.parquet", Path(tmp) / "f.parquet", work_dir=tmp)
        d = report.to_dict()
        extra = {k: d[k] for k in ("items", "ok", "unparsed", "failed", "flagged")}
        assert report.accounted and d["items"] == n
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb(), **extra}


def run(scale: str = "full") -> list[dict]:
    n = 1_000_000 if scale == "full" else 20_000
    small_n = n // 5
    label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
    small_label = f"{small_n // 1000}k"
    generate(n)
    generate(small_n)
    runs = [(run_child("moderation", "bare", n), run_child("moderation", "verdicts", n))
            for _ in range(2)]
    bare = min((b for b, _ in runs), key=lambda r: r["seconds"])
    ours = min((v for _, v in runs), key=lambda r: r["seconds"])
    big_peak = max(v["peak_mb"] for _, v in runs)
    small_peak = run_child("moderation", "verdicts", small_n)["peak_mb"]
    rate, bare_rate = n / ours["seconds"], n / bare["seconds"]
    return [
        {"name": f"moderation.verdicts_{label}_rows_per_s", "value": round(rate),
         "unit": "rows/s", "baseline": round(bare_rate), "ratio": round(rate / bare_rate, 3),
         "target": "recorded: the bare pass only reads and parses; verdicts also join, check "
                   "every field, score against labels and write two tables",
         "met": None,
         "accounted": {k: ours[k] for k in ("items", "ok", "unparsed", "failed", "flagged")}},
        {"name": f"moderation.peak_rss_{label}_mb", "value": round(big_peak, 1), "unit": "MB",
         "baseline": round(bare["peak_mb"], 1), "ratio": round(big_peak / bare["peak_mb"], 3),
         "target": "< 400 MB", "met": big_peak < 400},
        {"name": f"moderation.peak_rss_{label}_over_{small_label}", "value":
         round(big_peak / small_peak, 3), "unit": "x", "baseline": round(small_peak, 1),
         "ratio": None, "target": "<= 1.3", "met": big_peak / small_peak <= 1.3},
    ]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(argv[1], int(argv[2]))))
        return
    run_alone("moderation", run, argv)


if __name__ == "__main__":
    main()
