"""Chat generation through the local batch server vs `model.generate` in-process.

    .venv/bin/python -m bench.chat [--scale full|small]

full: 256 mixed-length chat prompts (half short questions, a third ~60-word passages to
summarise, the rest ~200-word passages), max_tokens 64, greedy, on the default model
SmolLM2-135M-Instruct; small: 48 prompts. Legs, all in one run:

* bare: `model.generate` in this process on the same model and tokenizer (loaded the way the
  server loads them), prompts sorted by length and generated a batch at a time, at each of
  BARE_BATCHES (the sizes that came out best in a sweep over 8-64; 64 was slower), in two
  interleaved halves run before and after the server legs so that background load on a shared
  machine hits every leg alike; the baseline is the faster batch size of this run;
* server: upload → batch → poll → download through `batch-workflows serve` (a subprocess,
  its model loaded by a warm-up request before timing), output tokens/s against bare
  (target ≥ 0.85);
* json_schema: the same prompts, each asking for JSON, with a strict json_schema on every
  request (constrained decoding), output tokens/s against the unconstrained server leg
  (target ≥ 0.7);
* the server's peak RSS over both batches (target < 1.5 GB);
* one real-time chat request sent while the unconstrained batch runs: its latency, beside the
  same request on the idle server.

Output tokens are counted as the usage the server reports and, for bare generate, the tokens
before the first end-of-turn token (what usage would count).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import run_alone

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).parent / ".work" / "chat" / f"run-{os.getpid()}"
SIZES = {"full": 256, "small": 48}
MAX_TOKENS = 64
BARE_BATCHES = (16, 32)
MODEL = "SmolLM2-135M-Instruct"
CHAT = "/v1/chat/completions"
TARGET = 0.85
JSON_TARGET = 0.7
RSS_LIMIT_MB = 1500
REALTIME = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 32, "temperature": 0}
SUMMARY = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "audience": {"enum": ["children", "adults", "experts"]},
    },
    "required": ["topic", "keywords", "audience"],
    "additionalProperties": False,
}
_TOPICS = ["rivers", "markets", "libraries", "batch jobs", "mountains", "music", "gardens",
           "search engines", "bread", "trains", "the moon", "bees"]
_WORDS = (
    "the of and to in a is that for it as was with be by on not this are or from at which but "
    "have an they you were she there been one all we their has when who will more no if out so "
    "said what up its about into than them can only other new some could time these two may "
    "then do first any now such like over even most made after also did many before must "
    "through back years where much way well down should because each just those people how "
    "market report quarter revenue growth customer model batch vector search river mountain "
    "library engine request server window language science history music garden city"
).split()


def prompts(n: int, seed: int = 5) -> list[str]:
    """Mixed lengths: 50 % short questions, 35 % 40-80-word passages, 15 % 150-250 words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            out.append(f"Explain {rng.choice(_TOPICS)} to a child in a few sentences.")
            continue
        k = rng.randint(40, 80) if r < 0.85 else rng.randint(150, 250)
        text = " ".join(rng.choice(_WORDS) for _ in range(k))
        out.append(f"Summarize this text: {text}")
    return out


def request_bodies(items: list[str], structured: bool) -> list[dict]:
    out = []
    for text in items:
        body: dict[str, Any] = {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0,
                                "messages": [{"role": "user", "content": text}]}
        if structured:
            body["messages"][0]["content"] = text + " Answer in JSON."
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "summary", "schema": SUMMARY, "strict": True}}
        out.append(body)
    return out


class _Bare:
    """`model.generate` in this process, on the model the backend loads."""

    def __init__(self, items: list[str]):
        from batch_workflows.backends.chat import ChatBackend

        backend = ChatBackend()
        self.model, self.tok = backend.load()
        self.eos = self.model.generation_config.eos_token_id
        self.texts = [
            self.tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                         add_generation_prompt=True)
            for t in items
        ]
        # Per batch size: wall seconds, CPU seconds, output tokens.
        self.seconds = dict.fromkeys(BARE_BATCHES, 0.0)
        self.cpu_seconds = dict.fromkeys(BARE_BATCHES, 0.0)
        self.tokens = dict.fromkeys(BARE_BATCHES, 0)
        self.outputs: dict[int, str] = {}
        self._generate([0])  # warm-up

    def _generate(self, idx: list[int]) -> int:
        import torch

        batch = self.tok([self.texts[i] for i in idx], return_tensors="pt", padding=True,
                         add_special_tokens=False)
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=MAX_TOKENS, do_sample=False)
        tokens = 0
        for row, i in enumerate(idx):
            ids = out[row, batch["input_ids"].shape[1]:].tolist()
            ids = ids[: ids.index(self.eos)] if self.eos in ids else ids
            tokens += len(ids)
            self.outputs[i] = self.tok.decode(ids, skip_special_tokens=True)
        return tokens

    def half(self, which: int, size: int) -> None:
        """Every other prompt, sorted by length, `size` at a time."""
        idx = sorted(range(which, len(self.texts), 2), key=lambda i: len(self.texts[i]))
        start, cpu = time.perf_counter(), time.process_time()
        for s in range(0, len(idx), size):
            self.tokens[size] += self._generate(idx[s : s + size])
        self.seconds[size] += time.perf_counter() - start
        self.cpu_seconds[size] += time.process_time() - cpu

    def best(self) -> int:
        """The batch size with the most output tokens per second in this run."""
        return max(BARE_BATCHES, key=lambda b: self.tokens[b] / self.seconds[b])


def _write(path: Path, bodies: list[dict]) -> None:
    with path.open("w") as fh:
        for i, body in enumerate(bodies):
            fh.write(json.dumps({"custom_id": f"c-{i}", "method": "POST", "url": CHAT,
                                 "body": body}) + "\n")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_batch(client: Any, srv: Any, path: Path, during: Any = None) -> tuple[float, float, list[dict]]:
    """Seconds from upload to downloaded output, the server's CPU seconds, the output lines."""
    start, cpu = time.perf_counter(), _cpu_seconds(srv.pid)
    with path.open("rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=CHAT,
                                  completion_window="24h")
    if during is not None:
        threading.Thread(target=during, daemon=True).start()
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    if batch.status != "completed" or not batch.output_file_id:
        raise RuntimeError(f"batch ended {batch.status}: {batch.errors}")
    text = client.files.content(batch.output_file_id).read().decode()
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds(srv.pid) - cpu
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(lines) != batch.request_counts.total:
        raise RuntimeError(f"{batch.request_counts.total - len(lines)} requests failed")
    return elapsed, cpu, lines


def output_tokens(lines: list[dict]) -> int:
    return sum(line["response"]["body"]["usage"]["completion_tokens"] for line in lines)


def server_legs(items: list[str], work: Path) -> dict:
    import openai

    sys.path.insert(0, str(ROOT / "tests"))
    from support.server import start_server

    plain, structured = work / "plain.jsonl", work / "json.jsonl"
    _write(plain, request_bodies(items, structured=False))
    _write(structured, request_bodies(items, structured=True))
    (work / "srv").mkdir(parents=True, exist_ok=True)
    with start_server(work / "srv", startup_timeout=300) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=2,
                               timeout=600)

        def realtime() -> float:
            start = time.perf_counter()
            client.chat.completions.create(model=MODEL, **REALTIME)
            return time.perf_counter() - start

        realtime()  # loads the model: not timed, as bare's load is not
        idle_latency = realtime()
        latency: list[float] = []

        def during_batch() -> None:
            time.sleep(5)  # the batch is decoding by then
            latency.append(realtime())

        plain_s, plain_cpu, plain_lines = _run_batch(client, srv, plain, during_batch)
        json_s, json_cpu, json_lines = _run_batch(client, srv, structured)
        peak_mb = srv.peak_rss_bytes() / 2**20
    return {"plain_s": plain_s, "plain_cpu": plain_cpu, "plain_lines": plain_lines,
            "json_s": json_s, "json_cpu": json_cpu, "json_lines": json_lines, "peak_mb": peak_mb,
            "idle_latency": idle_latency, "latency": latency[0] if latency else None}


def _json_valid(lines: list[dict]) -> tuple[int, int]:
    """(answers that parse and match the schema, answers cut by max_tokens)."""
    import jsonschema

    valid = cut = 0
    for line in lines:
        choice = line["response"]["body"]["choices"][0]
        if choice["finish_reason"] == "length":
            cut += 1
            continue
        jsonschema.validate(json.loads(choice["message"]["content"]), SUMMARY)
        valid += 1
    return valid, cut


def run(scale: str = "full") -> list[dict]:
    n = SIZES[scale]
    WORK.mkdir(parents=True, exist_ok=True)
    items = prompts(n)
    bare = _Bare(items)
    for size in BARE_BATCHES:
        bare.half(0, size)
    legs = server_legs(items, WORK)
    for size in reversed(BARE_BATCHES):
        bare.half(1, size)
    size = bare.best()
    shutil.rmtree(WORK, ignore_errors=True)
    bare_tps = bare.tokens[size] / bare.seconds[size]
    plain_tokens = output_tokens(legs["plain_lines"])
    server_tps = plain_tokens / legs["plain_s"]
    json_tokens = output_tokens(legs["json_lines"])
    json_tps = json_tokens / legs["json_s"]
    # CPU time per token: steadier than wall time when other processes share the cores (the
    # real-time request's CPU counts against the server).
    cpu_ratio = (bare.cpu_seconds[size] / bare.tokens[size]) / (legs["plain_cpu"] / plain_tokens)
    json_cpu_ratio = (legs["plain_cpu"] / plain_tokens) / (legs["json_cpu"] / json_tokens)
    same = sum(
        line["response"]["body"]["choices"][0]["message"]["content"]
        == bare.outputs[int(line["custom_id"][2:])]
        for line in legs["plain_lines"]
    )
    valid, cut = _json_valid(legs["json_lines"])
    device = "cuda" if str(bare.model.device).startswith("cuda") else "cpu"
    latency = legs["latency"]
    return [
        {
            "name": f"chat_server_vs_generate_{device}",
            "value": round(server_tps, 2), "unit": "output tokens/s",
            "baseline": round(bare_tps, 2), "ratio": round(server_tps / bare_tps, 3),
            "target": TARGET, "met": server_tps / bare_tps >= TARGET,
            "requests": n, "max_tokens": MAX_TOKENS, "generate_batch_size": size,
            "generate_tokens_per_s_by_batch_size": {
                b: round(bare.tokens[b] / bare.seconds[b], 2) for b in BARE_BATCHES},
            "server_seconds": round(legs["plain_s"], 1), "generate_seconds": round(bare.seconds[size], 1),
            "server_output_tokens": plain_tokens, "generate_output_tokens": bare.tokens[size],
            "server_cpu_seconds": round(legs["plain_cpu"], 1),
            "generate_cpu_seconds": round(bare.cpu_seconds[size], 1), "cpu_ratio": round(cpu_ratio, 3),
            "same_text_as_generate": f"{same}/{n}",
        },
        {
            "name": f"chat_json_schema_vs_unconstrained_{device}",
            "value": round(json_tps, 2), "unit": "output tokens/s",
            "baseline": round(server_tps, 2), "ratio": round(json_tps / server_tps, 3),
            "target": JSON_TARGET, "met": json_tps / server_tps >= JSON_TARGET,
            "json_seconds": round(legs["json_s"], 1), "json_output_tokens": json_tokens,
            "cpu_ratio": round(json_cpu_ratio, 3),
            "valid_json": f"{valid}/{n}", "cut_by_max_tokens": cut,
        },
        {
            "name": "chat_server_peak_rss",
            "value": round(legs["peak_mb"], 1), "unit": "MB", "baseline": None, "ratio": None,
            "target": f"< {RSS_LIMIT_MB} MB", "met": legs["peak_mb"] < RSS_LIMIT_MB,
        },
        {
            "name": "chat_realtime_latency_during_batch",
            "value": None if latency is None else round(latency, 2), "unit": "s",
            "baseline": round(legs["idle_latency"], 2),
            "ratio": None if latency is None else round(latency / legs["idle_latency"], 2),
            "target": "reported (idle server as baseline)",
        },
    ]


if __name__ == "__main__":
    run_alone("chat", run)
