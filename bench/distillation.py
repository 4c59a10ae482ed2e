"""Benchmark: the distillation dataset step (`flows.distillation.dataset.build_dataset`): results
Parquet + prompt table → train/validation JSONL, metadata and dropped Parquet, every filter on.

Data (generated once under bench/.work/distillation/, reused while the generator is unchanged):
a prompt table and a results Parquet as the lifecycle writes them (65,536-row groups, rows in a
scrambled order), N requests: a system prompt, a ~25-word user prompt and a ~60-word answer
each, with 1 % failed, 0.5 % errored, 0.1 % missing, 2 % cut at max_tokens, 0.5 % refusals,
1 % the same answer as the prompt's other sample, 1 % near-identical to another answer.

Figures:
* dataset rows/s at N against a bare pass over the same rows: pyarrow reads both files by row
  group and orjson writes a ``{"messages": [system, user, assistant]}`` line per row (no join,
  no filter, no metadata) — best of two alternating runs each, every run in a fresh process;
  target ≥ 0.5;
* peak RSS (VmHWM) of the dataset step at N and N / 5, each in a fresh process — targets
  < 400 MB and N / (N / 5) ≤ 1.3.

scale "full": N = 1,000,000; scale "small": N = 50,000 (a smoke run).
Run alone: `.venv/bin/python -m bench.distillation [--scale small|full]`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from bench import peak_rss_mb, run_alone, run_child

WORK = Path(__file__).resolve().parent / ".work" / "distillation"
GENERATOR_VERSION = "3"
SYSTEM = "You are a helpful, accurate assistant. Answer the user's request directly."


def _fragments(k: int, words: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ba", "ke", "lo", "mi", "nu", "ra", "so", "ti", "ve", "zo")
             for b in ("ck", "de", "fa", "ga", "lin", "mor", "pet", "rus", "ter", "wen", "x")]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(k)]


def generate(n: int) -> dict[str, Path]:
    """Write (or reuse) the prompt table and results Parquet of n requests."""
    folder = WORK / f"v{GENERATOR_VERSION}-{n}"
    paths = {"prompts": folder / "prompts.parquet", "results": folder / "results.parquet"}
    if (folder / "done").exists():
        return paths  # before any import: the children measure the step, not the generator
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batch_workflows.flows.distillation.requests import PROMPT_SCHEMA
    from batch_workflows.results.schema import SCHEMA

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    user_parts, answer_parts = _fragments(997, 6, 1), _fragments(1009, 15, 2)
    picks = rng.integers(0, len(answer_parts), (n, 4)).tolist()
    group = 65_536
    with (pq.ParquetWriter(paths["prompts"], PROMPT_SCHEMA) as prompts,
          pq.ParquetWriter(paths["results"], SCHEMA) as results):
        order = rng.permutation(n)  # results come back in any order
        for start in range(0, n, group):
            idx = np.arange(start, min(start + group, n))
            cids = [f"p{i // 2:016x}-s{i % 2}" for i in idx]
            users = [f"Question {i // 2}: {user_parts[i // 2 % 997]} "
                     f"{user_parts[(i // 2 * 7) % 997]} {user_parts[(i // 2 * 13) % 997]}?"
                     for i in idx]
            prompts.write_table(pa.table({
                "custom_id": cids, "prompt_id": [c.rsplit("-s", 1)[0] for c in cids],
                "sample": (idx % 2).astype("int32"), "source": ["bench.jsonl"] * len(idx),
                "line": idx // 2 + 1, "task": ["user"] * len(idx), "system": [SYSTEM] * len(idx),
                "user": users}, schema=PROMPT_SCHEMA))
        for start in range(0, n, group):
            idx = order[start:start + group]
            results.write_table(_results(idx, answer_parts, picks, SCHEMA),
                                row_group_size=group)
    (folder / "done").write_text("ok")
    return paths


def _results(idx, parts: list[str], picks, schema):
    import pyarrow as pa

    rows = {name: [] for name in schema.names}

    def answer(i: int) -> str:
        """A distinct ~60-word answer: four of the 1,009 fragments, drawn for row i."""
        a, b, c, d = picks[i]
        return f"Answer {i}: {parts[a]} {parts[b]} {parts[c]} {parts[d]}"

    for i in idx.tolist():
        kind = i % 1000
        status, code, content, finish = "succeeded", 200, answer(i), "stop"
        if kind < 10:
            status, code, content, finish = "failed", 500, None, None
        elif kind < 15:
            status, code, content, finish = "errored", None, None, None
        elif kind < 16:
            status, code, content, finish = "missing", None, None, None
        elif kind < 36:
            finish = "length"
        elif kind < 41:
            content = "I'm sorry, but I can't help with that request."
        elif kind < 51:  # an odd sample said exactly what the prompt's even one did
            content = answer(i - 1 if i % 2 else i)
        elif kind < 61:  # another answer with its last word changed
            words = answer((i + 500) % len(picks)).split(" ")
            content = " ".join([*words[:-1], "different"])
        ok = status == "succeeded"
        for key, value in (("custom_id", f"p{i // 2:016x}-s{i % 2}"), ("status", status),
                           ("status_code", code), ("error_code", None if ok else "boom"),
                           ("error_message", None if ok else "boom"), ("model", "teacher-1"),
                           ("content", content), ("finish_reason", finish), ("embedding", None),
                           ("embeddings", None), ("prompt_tokens", 60 if ok else None),
                           ("completion_tokens", 80 + i % 40 if ok else None),
                           ("total_tokens", 140 + i % 40 if ok else None)):
            rows[key].append(value)
    return pa.table(rows, schema=schema)


def _bare(paths: dict[str, Path], out: Path) -> int:
    """The floor: both files read by row group, one messages line written per row."""
    import orjson

    from batch_workflows.parquet import open_parquet

    rows = 0
    prompts = open_parquet(paths["prompts"]).iter_batches(65_536, columns=["system", "user"])
    answers = open_parquet(paths["results"]).iter_batches(65_536, columns=["content"])
    with open(out / "bare.jsonl", "wb", buffering=1 << 20) as fh:
        for p, a in zip(prompts, answers, strict=True):
            lines = [orjson.dumps({"messages": [
                {"role": "system", "content": s}, {"role": "user", "content": u},
                {"role": "assistant", "content": c}]})
                for s, u, c in zip(p.column(0).to_pylist(), p.column(1).to_pylist(),
                                   a.column(0).to_pylist(), strict=True)]
            fh.write(b"\n".join(lines) + b"\n")
            rows += len(lines)
    return rows


def _child(task: str, n: int) -> dict:
    """Runs in a fresh process: one measurement, printed as JSON."""
    paths = generate(n)
    out = WORK / f"out-{task}-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    if task == "bare":
        rows, extra = _bare(paths, out), {}
    else:
        from batch_workflows.flows.distillation.dataset import build_dataset
        from batch_workflows.flows.distillation.settings import DistillationSettings

        report = build_dataset(paths["prompts"], paths["results"], out, DistillationSettings())
        rows, extra = report.requests, {"kept": report.kept, "dropped": report.dropped,
                                        "adds_up": report.adds_up}
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "rows": rows, "peak_mb": peak_rss_mb(), **extra}


def run(scale: str = "full") -> list[dict]:
    n = 1_000_000 if scale == "full" else 50_000
    small_n = n // 5
    label = lambda k: f"{k // 1000}k" if k < 1_000_000 else f"{k // 1_000_000}M"  # noqa: E731
    generate(n)
    generate(small_n)
    runs = [(run_child("distillation", "bare", n), run_child("distillation", "dataset", n))
            for _ in range(2)]
    bare = min((b for b, _ in runs), key=lambda r: r["seconds"])
    ours = min((d for _, d in runs), key=lambda r: r["seconds"])
    ours["peak_mb"] = max(d["peak_mb"] for _, d in runs)
    small = run_child("distillation", "dataset", small_n)
    assert ours["adds_up"] and ours["rows"] == n, ours
    rate, floor = n / ours["seconds"], n / bare["seconds"]
    return [
        {
            "name": f"distillation.dataset_{label(n)}_rows_per_s",
            "value": round(rate),
            "unit": "rows/s",
            "baseline": round(floor),
            "ratio": round(rate / floor, 3),
            "target": ">= 0.5 x pyarrow read + orjson write",
            "met": rate / floor >= 0.5,
            "kept": ours["kept"],
            "dropped": ours["dropped"],
        },
        {
            "name": f"distillation.peak_rss_{label(n)}_mb",
            "value": round(ours["peak_mb"], 1),
            "unit": "MB",
            "baseline": round(small["peak_mb"], 1),
            "ratio": round(ours["peak_mb"] / small["peak_mb"], 3),
            "target": f"< 400 MB and <= 1.3 x the {label(small_n)} figure",
            "met": ours["peak_mb"] < 400 and ours["peak_mb"] / small["peak_mb"] <= 1.3,
        },
    ]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(argv[1], int(argv[2]))))
        return
    run_alone("distillation", run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
