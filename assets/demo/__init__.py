"""`make demo`: one partition of each flow on the embedded default, then what came out.

    python -m assets.demo

1. starts the local batch engine unless something already answers at BATCH_BASE_URL (or a
   provider is configured with BATCH_PROVIDER);
2. on a persistent Dagster instance under .data/dagster (DAGSTER_HOME, so the runs show up later
   in `make dev`), materializes with their checks:
   * embeddings — every partition of the Python language reference → Qdrant, then two searches;
   * moderation — one labelled day of the shipped backlog → verdicts, and their accuracy;
   * distillation — a few shipped prompts → the teacher → a fine-tuning dataset, three examples;
3. prints per flow where its outputs are and what the same work costs at providers' batch prices.

Honours the code location's settings (BATCH_*, QDRANT_*, EMBEDDINGS_*, MODERATION_*,
DISTILLATION_*). Run twice, it re-attaches to the batches of the first run: nothing is submitted
or paid twice, and the outputs are left as they were. Timings go to .data/demo-timings.json
(read by bench/qdrant_index.py).

Modules: ``session`` (instance, resources, engine, one watched materialization), ``console``
(what is printed), ``cost`` (prices), one module per flow.
"""

from __future__ import annotations

import time

from assets.demo import distillation, embeddings, moderation
from assets.demo.console import say
from assets.demo.session import (
    engine_seconds,
    open_session,
    record_timings,
    start_engine,
    stop_engine,
)

FLOW_NAMES = ("embeddings", "moderation", "distillation")


def main() -> int:
    say("== batch-workflows demo: three flows on the embedded default")
    session = open_session()
    start_engine(session)
    say("\n== embeddings: the Python language reference → batch embeddings → Qdrant")
    outcome = embeddings.run(session)
    say(f"\n== moderation: a day of the labelled backlog ({moderation.DAY}) → verdicts")
    moderated = moderation.run(session)
    say("\n== distillation: prompts → the teacher model → a fine-tuning dataset")
    distilled = distillation.run(session)
    total = time.perf_counter() - session.t0
    running = sum(engine_seconds(session, name) for name in FLOW_NAMES)
    engine = running + session.engine_start_seconds
    record_timings({
        "engine_start_seconds": session.engine_start_seconds,
        "flow_seconds": outcome.seconds, "steps": outcome.steps, "total_seconds": total,
        "engine_seconds": engine, "other_seconds": total - engine,
        "batches_created": outcome.created, "points": outcome.points_after,
        "tokens": outcome.tokens,
    }, first_run=bool(outcome.created))
    say(f"\n== done in {total:.0f}s: engine {engine:.0f}s (start "
        f"{session.engine_start_seconds:.0f}s + running the batches {running:.0f}s), "
        f"everything else {total - engine:.0f}s")
    stop_engine(session)
    return 0 if outcome.ok and moderated and distilled else 1
