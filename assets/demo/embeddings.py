"""The demo's embeddings part: the Python language reference → batch embeddings → Qdrant."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from assets.demo.console import say
from assets.demo.session import Session, engine_seconds

EXAMPLE_QUERIES = (
    "How do I handle an exception raised inside a block of code?",
    "How do I write a small anonymous function?",
)
# Provider embedding models to price the same batch at (those found in the price table).
PRICE_MODELS = (
    "text-embedding-3-small",
    "text-embedding-3-large",
    "BAAI/bge-en-icl",
    "Qwen/Qwen3-Embedding-8B",
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
    engine_seconds: float = 0.0


def run(session: Session) -> Outcome:
    """Materialize every embeddings partition, then show the outputs, the cost and searches."""
    import assets.embeddings as flow

    started = time.perf_counter()
    settings = flow.settings()
    keys = flow.partition_keys()  # the shipped corpus's shards, then one per inbox file
    flow.register_partitions(session.instance, keys)
    say(f"partitions: {', '.join(keys)} (model {settings.model}, chunks of "
        f"{settings.chunk_tokens} tokens with {settings.chunk_overlap} overlap, "
        f"≤{settings.inputs_per_request} chunks per request)")
    outcome = Outcome()
    with session.qdrant.open() as index:
        outcome.points_before = index.count()
    say(f"collection: {session.qdrant.describe()}: {outcome.points_before} points before this run")
    selection = [*flow.lifecycle.assets, flow.embeddings_index, *flow.lifecycle.checks,
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
    outcome.engine_seconds = engine_seconds(session, flow.NAME)
    with session.qdrant.open() as index:
        outcome.points_after = index.count()
    _outputs(session, outcome, flow.NAME)
    outcome.tokens = _cost(session, flow.NAME, keys)
    _searches(session)
    return outcome


def _outputs(session: Session, outcome: Outcome, name: str) -> None:
    say("\n== outputs")
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


def _cost(session: Session, name: str, keys: list[str]) -> int:
    """Print what the embedded tokens cost at providers' batch prices; returns the tokens.

    A partition without a summary (its run failed before collecting) is named: the figure
    then covers the others only, and says so, rather than being silently too low.
    """
    from batch_workflows.lifecycle import read_summary
    from batch_workflows.pricing import PriceTable

    tokens, missing = 0, []
    for key in keys:
        try:
            tokens += read_summary(session.artifacts, name, key).prompt_tokens
        except FileNotFoundError:
            missing.append(key)
    scope = (f" (partitions {', '.join(missing)} have no results yet and are not counted)"
             if missing else "")
    say(f"\n== cost: {tokens:,} input tokens embedded{scope}; the same batch at a provider's "
        "batch price:")
    table = PriceTable.default()
    priced = [m for m in PRICE_MODELS if table.find(m) is not None]
    for model in priced:
        price = table.find(model)
        usd = table.cost(model, tokens, 0, batch=True)
        say(f"   {model}: ${usd:.6f}  (batch price ${price.batch_input}/M input tokens: "
            f"50 % of ${price.input_per_million}, rounded up to the cent)")
    if not priced:
        say("   (none of the reference embedding models is in the price table)")
    return tokens


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
