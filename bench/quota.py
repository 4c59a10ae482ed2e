"""A partition larger than the provider's enqueued-token quota (issue 20).

N embedding requests (20,000 at full scale, 2,000 small) run through
``lifecycle.run_to_completion`` against the engine started with ``--enqueued-token-limit`` at a
fifth of the partition's estimated input tokens, the batch resource's profile declaring the
same limit: the lifecycle cuts shards to a quarter of the quota and creates each when it fits,
so the partition completes in waves. Reported: the wall time beside the same partition on an
engine without a limit (the ratio is the cost of waiting), the creates the engine refused
(target 0), the requests lost (target 0), the number of batches, and the peak of estimated
tokens enqueued at once (from the batches' in_progress/completed times) against the limit. A
second baseline runs the partition without a limit in as many shards as the limited run made:
the engine runs up to four batches at once on two worker threads, so one big batch is not the
fair comparison for the cost of waiting.

Run alone: ``.venv/bin/python -m bench.quota [--scale small|full]``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from bench import run_alone

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "quota"
MODEL = "all-MiniLM-L6-v2"
POLL = 0.2
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def _requests(n: int) -> list[dict]:
    """Embedding requests of a few mixed lengths (3 to 24 words)."""
    out = []
    for i in range(n):
        words = [WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 22)]
        out.append({"custom_id": f"q{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": {"model": MODEL, "input": f"{i} " + " ".join(words)}})
    return out


def _run(name: str, requests: list[dict], limit: int | None,
         per_file: int | None = None) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.server import start_server

    from batch_workflows import lifecycle as lc
    from batch_workflows.client import BatchClient
    from batch_workflows.profiles import EMBEDDINGS, get_profile

    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    profile = get_profile("local").with_limits(default_enqueued_token_limit=limit)
    if per_file:
        profile = profile.with_limits(max_requests_per_file=per_file)
    policy = lc.Policy(profile, poll_interval=POLL, wait_timeout=3600)
    with start_server(folder, enqueued_token_limit=limit) as srv, \
            BatchClient(srv.base_url, api_key=srv.api_key) as client:
        started = time.perf_counter()
        outcome = lc.run_to_completion(client, requests, folder / "work", name="quota",
                                       endpoint=EMBEDDINGS, policy=policy)
        seconds = time.perf_counter() - started
        batches = [b for b in client.list_batches() if (b.get("metadata") or {}).get(lc.META_KEY)]
    summary = outcome.summary
    refused = [b for b in batches if b["status"] == "failed"]
    return {"seconds": seconds, "batches": len(batches), "refused": len(refused),
            "lost": len(requests) - summary.counts.get("succeeded", 0),
            "accounted": summary.accounted, "peak": _peak_enqueued(batches)}


def _peak_enqueued(batches: list[dict]) -> int:
    """The most estimated input tokens held by batches in progress at one moment."""
    from batch_workflows import lifecycle as lc

    events = []
    for b in batches:
        tokens = int((b.get("metadata") or {}).get(lc.META_TOKENS, "0"))
        if tokens and b.get("in_progress_at") and b.get("completed_at"):
            events += [(b["in_progress_at"], tokens), (b["completed_at"], -tokens)]
    peak = held = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
        held += delta
        peak = max(peak, held)
    return peak


def run(scale: str) -> list[dict]:
    from batch_workflows.pricing import estimate_tokens

    n = 20_000 if scale == "full" else 2_000
    requests = _requests(n)
    tokens = sum(estimate_tokens(r["body"])[0] for r in requests)
    limit = tokens // 5
    quota = _run("quota", requests, limit)
    bare = _run("bare", requests, None)
    # The same number of shards without a limit: the engine runs several batches at once, so
    # this isolates the cost of waiting from the cost of one big batch.
    same = _run("same-shards", requests, None, per_file=-(-n // quota["batches"]))
    ok = quota["refused"] == 0 and quota["lost"] == 0 and quota["accounted"]
    return [
        {"name": f"{n:,} embedding requests (~{tokens:,} tokens) under an enqueued-token limit "
                 f"of {limit:,} (a fifth): wall time, beside no limit",
         "value": round(quota["seconds"], 2), "unit": "s", "baseline": round(bare["seconds"], 2),
         "ratio": round(quota["seconds"] / bare["seconds"], 3),
         "target": "completes; 0 refused creates, 0 lost", "met": ok},
        {"name": f"the same, beside no limit with the same {same['batches']} shards",
         "value": round(quota["seconds"], 2), "unit": "s", "baseline": round(same["seconds"], 2),
         "ratio": round(quota["seconds"] / same["seconds"], 3), "target": "reported"},
        {"name": "refused creates / requests lost (with the limit)",
         "value": quota["refused"], "unit": "batches", "baseline": quota["lost"], "ratio": None,
         "target": "0 / 0", "met": ok},
        {"name": f"batches (with the limit; without: {bare['batches']}) and peak estimated "
                 "tokens in progress at once",
         "value": quota["peak"], "unit": "tokens", "baseline": limit,
         "ratio": round(quota["peak"] / limit, 3), "target": "≤ 1.0 of the limit",
         "met": quota["peak"] <= limit, "batches": quota["batches"]},
    ]


if __name__ == "__main__":
    run_alone("quota", run)
