"""The demo's embeddings part: the Python language reference → batch embeddings → Qdrant."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from assets.demo.console import say
from assets.demo.cost import EMBEDDING_MODELS, show_cost, tokens_of
from assets.demo.session import Session

EXAMPLE_QUERIES = (
    "How do I handle an exception raised inside a block of code?",
    "How do I write a small anonymous function?",
)


@dataclass
class Outcome:
    """What the embeddings part did, for the summary line and the timings file."""

    ok: bool = True
    created: int = 0  # batches submitted by this run
    reattached: int = 0  # partitions whose batches existed already
    points_before: int = 0
    points_after: int = 0
    tokens: int = 0
    steps: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run(session: Session) -> Outcome:
    """Materialize every embeddings partition, then show the outputs, the cost and searches."""
    from assets.flows import load_flow

    started = time.perf_counter()
    flow = load_flow("embeddings")  # assets/defs/embeddings/defs.yaml, the environment now
    settings = flow.settings
    keys = flow.partition_keys()  # the shipped corpus's shards, then one per inbox file
    flow.register_partitions(session.instance, keys)
    say(f"partitions: {', '.join(keys)} (model {settings.model}, chunks of "
        f"{settings.chunk_tokens} tokens with {settings.chunk_overlap} overlap, "
        f"≤{settings.inputs_per_request} chunks per request)")
    outcome = Outcome()
    with session.qdrant.open() as index:
        outcome.points_before = index.count()
    say(f"collection: {session.qdrant.describe()}: {outcome.points_before} points before this run")
    selection = [*flow.lifecycle.assets, flow.index, *flow.lifecycle.checks,
                 flow.points_match_chunks, flow.chunks_retrieve_themselves]
    for key in keys:
        say(f"\n-- partition {key}")
        run = session.materialize(selection, key)
        outcome.ok &= run.result.success
        for step, secs in run.step_seconds.items():
            outcome.steps[step] = outcome.steps.get(step, 0.0) + secs
        if (batch := run.metadata(flow.lifecycle.batch.key.to_user_string())) is not None:
            outcome.created += int(batch["batches_created"])
            outcome.reattached += int(bool(batch["reattached"]))
    outcome.seconds = time.perf_counter() - started
    with session.qdrant.open() as index:
        outcome.points_after = index.count()
    _outputs(session, outcome, flow.name)
    prompt, completion, missing = tokens_of(session, flow.name, keys)
    show_cost("the embeddings", prompt, completion, missing, EMBEDDING_MODELS)
    outcome.tokens = prompt
    _searches(session)
    return outcome


def _outputs(session: Session, outcome: Outcome, name: str) -> None:
    say("\n== embeddings outputs")
    say("artifacts (shards, raw batch output, results Parquet, chunk tables): "
        f"{session.artifacts.uri(name)}")
    say(f"vectors: {session.qdrant.describe()}: {outcome.points_after} points")
    say(f"dagster runs: recorded under {session.home}; browse them with `make dev`")
    if outcome.created == 0 and outcome.reattached:
        same = outcome.points_after == outcome.points_before
        say(f"second run: 0 batches submitted — re-attached to the existing batches of all "
            f"{outcome.reattached} partition(s); nothing paid twice. Points "
            f"{outcome.points_before} → {outcome.points_after}: "
            + ("collection unchanged." if same else "changed (the inputs changed)."))
    else:
        say(f"submitted {outcome.created} new batch(es); {outcome.reattached} partition(s) "
            "re-attached")


def _searches(session: Session) -> None:
    from batch_workflows.flows.embeddings.search import format_hit, search
    from batch_workflows.flows.embeddings.vectors import QdrantSettings

    batch = session.batch
    base_url = batch.resolved_base_url if batch.provider == "local" and batch.engine_is_up() else None
    for query in EXAMPLE_QUERIES:
        say(f'\n== batch-workflows search "{query}" --limit 3')
        for rank, hit in enumerate(search(query, 3, QdrantSettings.from_env(),
                                          base_url=base_url) or [], 1):
            say(format_hit(rank, hit))
