"""The local chat engine on requests that share a long system prompt: prefix sharing vs none.

    .venv/bin/python -m bench.shared_prefix [--scale full|small]

The requests are the moderation flow's `llm` requests for the shipped sample's first N items
(the ~1,500-token policy prompt, the item, a strict json_schema, max_tokens 160, greedy) on the
default model SmolLM2-135M-Instruct, run through ChatBackend in this process by two backends:
one with prefix sharing (the default: a run prefills the policy prompt once) and one without
(every prompt prefilled whole: the baseline). Each leg runs in two halves, interleaved (with,
without, without, with), so that background load on a shared machine hits both alike; a half
is one run, as a chunk of a batch is in the server.

Figure: requests/s with sharing against without (target ≥ 1.3), and how many answers are the
same text in both legs (greedy: they should all be). Sharing saves prefill compute only; the
decoding steps, which read the weights and every row's whole KV cache, are the rest of the time.

full: N = 32; small: N = 8.
"""

from __future__ import annotations

import time
from typing import Any

from bench import run_alone

SIZES = {"full": 32, "small": 8}
TARGET = 1.3


def request_bodies(n: int) -> list[dict[str, Any]]:
    from batch_workflows.flows.moderation.evaluate import SAMPLE_BACKLOG, labelled_items
    from batch_workflows.flows.moderation.judges import LlmJudge
    from batch_workflows.flows.moderation.taxonomy import load_policy

    policy = load_policy()
    judge = LlmJudge(policy, "SmolLM2-135M-Instruct")
    items = [item for _, item in labelled_items(SAMPLE_BACKLOG, policy)]
    step = max(1, len(items) // n)  # spread over the days and categories
    return [judge.request(f"item:{i}", item.text)["body"] for i, item in enumerate(items[::step][:n])]


def timed_run(backend: Any, bodies: list[dict]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    results = backend.run(bodies)
    seconds = time.perf_counter() - started
    texts = []
    for res in results:
        assert res is not None and res.status_code == 200, res
        texts.append(res.body["choices"][0]["message"]["content"])
    return seconds, texts


def run(scale: str = "full") -> list[dict]:
    from batch_workflows.backends.chat import ChatBackend

    bodies = request_bodies(SIZES[scale])
    halves = [bodies[: len(bodies) // 2], bodies[len(bodies) // 2 :]]
    shared, whole = ChatBackend(), ChatBackend(min_shared_prefix=None)
    shared.load()
    whole.load()
    seconds = {"shared": 0.0, "whole": 0.0}
    texts: dict[str, list[str]] = {"shared": [], "whole": []}
    for half, order in zip(halves, (("shared", "whole"), ("whole", "shared")), strict=True):
        for leg in order:
            s, t = timed_run(shared if leg == "shared" else whole, half)
            seconds[leg] += s
            texts[leg] += t
    shared.close()
    whole.close()
    n = len(bodies)
    rate, base = n / seconds["shared"], n / seconds["whole"]
    same = sum(a == b for a, b in zip(texts["shared"], texts["whole"], strict=True))
    return [{
        "name": "chat_shared_prompt_prefix_vs_whole_prefill",
        "value": round(rate, 3), "unit": "requests/s", "baseline": round(base, 3),
        "ratio": round(rate / base, 3), "target": TARGET, "met": rate / base >= TARGET,
        "requests": n, "shared_seconds": round(seconds["shared"], 1),
        "whole_seconds": round(seconds["whole"], 1), "same_text": f"{same}/{n}",
    }]


if __name__ == "__main__":
    run_alone("shared_prefix", run)
