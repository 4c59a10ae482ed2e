"""Raw batch files for the distillation tests: the request lines a flow built, and the output
and error lines a provider would return for them, joined by the real results join."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from batch_workflows.flows.distillation.prompts import Prompt
from batch_workflows.flows.distillation.requests import PromptTableWriter, build_requests
from batch_workflows.flows.distillation.settings import DistillationSettings
from batch_workflows.results import join_results


@dataclass(frozen=True)
class Answer:
    """What came back for one request: an answer, an HTTP failure or an expiry."""

    content: str | None = "An answer."
    finish_reason: str = "stop"
    status_code: int = 200
    expired: bool = False
    prompt_tokens: int = 20
    completion_tokens: int = 10


def prompts_of(texts: Iterable[str], source: str = "test.jsonl") -> list[Prompt]:
    return [Prompt(t, source, n) for n, t in enumerate(texts, start=1)]


def build(folder: Path, prompts: Iterable[Prompt], settings: DistillationSettings
          ) -> tuple[Path, Path, list[dict]]:
    """requests.jsonl and the prompt table for `prompts`."""
    folder.mkdir(parents=True, exist_ok=True)
    table = PromptTableWriter(folder / "prompts.parquet")
    requests = list(build_requests(prompts, settings, table))
    table.close()
    path = folder / "requests.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in requests))
    return path, table.path, requests


def answer_all(folder: Path, requests_path: Path, answers: Mapping[str, Answer | None],
               model: str = "teacher-1") -> Path:
    """Output and error files (lines in reverse order, as a provider may) and their join;
    a custom_id mapped to None gets no line at all."""
    out, err = folder / "output.jsonl", folder / "errors.jsonl"
    ids = [orjson.loads(line)["custom_id"] for line in requests_path.read_bytes().splitlines()]
    with open(out, "wb") as o, open(err, "wb") as e:
        for i, cid in enumerate(reversed(ids)):
            a = answers.get(cid, Answer())
            if a is None:
                continue
            if a.expired:
                e.write(orjson.dumps({"id": f"r{i}", "custom_id": cid, "response": None, "error": {
                    "code": "batch_expired", "message": "expired"}}) + b"\n")
                continue
            if a.status_code != 200:
                body = {"error": {"message": "boom", "type": "server_error", "code": "boom"}}
            else:
                body = {"id": f"c{i}", "object": "chat.completion", "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant",
                                                             "content": a.content},
                                     "finish_reason": a.finish_reason}],
                        "usage": {"prompt_tokens": a.prompt_tokens,
                                  "completion_tokens": a.completion_tokens,
                                  "total_tokens": a.prompt_tokens + a.completion_tokens}}
            o.write(orjson.dumps({"id": f"r{i}", "custom_id": cid, "response": {
                "status_code": a.status_code, "request_id": f"q{i}", "body": body},
                "error": None}) + b"\n")
    results = folder / "results.parquet"
    join_results(requests_path, out, err, out_path=results)
    return results
