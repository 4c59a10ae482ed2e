"""`make demo`: index the Python language reference through the batch lifecycle, then search it.

    python -m assets.demo

1. starts the local batch engine unless something already answers at BATCH_BASE_URL (or a
   provider is configured with BATCH_PROVIDER);
2. registers the partitions (the shipped pydoc corpus shards + files already in the inbox);
3. materializes every partition of the embeddings flow (requests → batch → results → index,
   with their checks) on a persistent Dagster instance under .data/dagster (DAGSTER_HOME), so
   the runs show up later in `make dev`;
4. prints where the outputs are, what the batch would cost at a provider's batch price, and the
   answers to two example searches.

Honours the code location's settings: BATCH_PROVIDER / BATCH_BASE_URL / BATCH_API_KEY,
BATCH_ARTIFACTS_URI, QDRANT_PATH / QDRANT_URL / QDRANT_API_KEY / QDRANT_COLLECTION,
EMBEDDING_MODEL, EMBEDDINGS_*. Run twice, it re-attaches to the batches of the first run
(nothing is submitted or paid twice) and the collection is left as it was.
Timings go to .data/demo-timings.json (read by bench/qdrant_index.py).

Modules: ``session`` (instance, resources, engine, one watched materialization), ``console``
(what is printed), ``embeddings`` (the flow's part).
"""

from __future__ import annotations

import time

from assets.demo import embeddings
from assets.demo.console import say
from assets.demo.session import open_session, record_timings, start_engine, stop_engine


def main() -> int:
    say("== batch-workflows demo: the Python language reference → batch embeddings → Qdrant")
    session = open_session()
    start_engine(session)
    outcome = embeddings.run(session)
    total = time.perf_counter() - session.t0
    engine = outcome.engine_seconds + session.engine_start_seconds
    record_timings({
        "engine_start_seconds": session.engine_start_seconds,
        "flow_seconds": outcome.seconds, "steps": outcome.steps, "total_seconds": total,
        "engine_seconds": engine, "other_seconds": total - engine,
        "batches_created": outcome.created, "points": outcome.points_after,
        "tokens": outcome.tokens,
    }, first_run=bool(outcome.created))
    say(f"\n== done in {total:.0f}s: engine {engine:.0f}s (start "
        f"{session.engine_start_seconds:.0f}s + running the batches {outcome.engine_seconds:.0f}s), "
        f"everything else {total - engine:.0f}s")
    stop_engine(session)
    return 0 if outcome.ok else 1
