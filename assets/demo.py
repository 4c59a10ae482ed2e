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
"""

import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

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
TIMINGS_PATH = Path(".data/demo-timings.json")


def say(text: str = "") -> None:
    print(text, flush=True)


class RunWatcher(threading.Thread):
    """Prints a run's progress from the Dagster event log while it executes."""

    INTERESTING = ("STEP_START", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_FAILURE")

    HEARTBEAT = 15.0  # seconds of silence before asking the engine how the batch is doing

    def __init__(self, tag: str, started: float, batch_status: Any = None):
        super().__init__(daemon=True)
        self.tag = tag
        self.started = started
        self.batch_status = batch_status  # batch id -> batch object (a BatchClient method)
        self.stop = threading.Event()
        self.seen = 0
        self.run_id: str | None = None
        self.step_seconds: dict[str, float] = {}
        self.batch_ids: list[str] = []
        self.last_output = time.time()

    def run(self) -> None:
        from dagster import DagsterInstance, RunsFilter

        instance = DagsterInstance.get()
        while True:
            finished = self.stop.is_set()
            if self.run_id is None:
                runs = instance.get_runs(RunsFilter(tags={"batch_workflows/demo": self.tag}), limit=1)
                self.run_id = runs[0].run_id if runs else None
            if self.run_id is not None:
                records = instance.all_logs(self.run_id)
                for entry in records[self.seen :]:
                    self._show(entry)
                    self.last_output = time.time()
                self.seen = len(records)
            if finished:
                return
            if self.batch_ids and time.time() - self.last_output > self.HEARTBEAT:
                self._heartbeat()
            self.stop.wait(0.5)

    def _heartbeat(self) -> None:
        self.last_output = time.time()
        if self.batch_status is None:
            return
        for bid in self.batch_ids:
            try:
                b = self.batch_status(bid)
            except Exception as exc:  # noqa: BLE001 - progress output must not end the demo
                say(f"[{time.time() - self.started:6.1f}s]     (could not poll {bid}: {exc})")
                continue
            c = b.get("request_counts") or {}
            say(f"[{time.time() - self.started:6.1f}s]     waiting for the engine: {bid} "
                f"{b.get('status')}, {c.get('completed', 0)}/{c.get('total', '?')} requests done")

    def _show(self, entry: Any) -> None:
        t = f"[{entry.timestamp - self.started:6.1f}s]"
        event = entry.dagster_event
        if event is None:
            if entry.level >= 20 and entry.user_message:  # the assets' own INFO lines
                say(f"{t}     {entry.user_message}")
            return
        kind = event.event_type_value
        if kind == "STEP_SUCCESS":
            self.step_seconds[event.step_key] = event.event_specific_data.duration_ms / 1000
        if kind not in self.INTERESTING:
            return
        data = event.event_specific_data
        if kind == "STEP_START":
            say(f"{t}   ▸ {event.step_key}")
        elif kind == "ASSET_MATERIALIZATION":
            md = {k: v.value for k, v in data.materialization.metadata.items()}
            if isinstance(md.get("batch_ids"), list):
                self.batch_ids = list(md["batch_ids"])
            say(f"{t}     ✓ {data.materialization.asset_key.to_user_string()}: {_short(md)}")
        elif kind == "ASSET_CHECK_EVALUATION":
            mark = "passed" if data.passed else "FAILED"
            say(f"{t}     check {data.check_name}: {mark}")
        elif kind == "STEP_FAILURE":
            say(f"{t}     ✗ {event.step_key} failed: {data.error.message.strip()[:500]}")


def _short(md: dict[str, Any]) -> str:
    keys = ("requests", "shards", "batches_created", "reattached", "succeeded", "failed",
            "prompt_tokens", "chunks", "points", "upserted", "unchanged", "stale_deleted")
    return ", ".join(f"{k}={md[k]}" for k in keys if k in md) or "done"


def _prices(tokens: int) -> list[str]:
    """What `tokens` input tokens cost at each reference model's batch price (pricing.py)."""
    from batch_workflows.pricing import PriceTable

    table = PriceTable.default()
    lines = []
    for model in PRICE_MODELS:
        price = table.find(model)
        if price is None:
            continue
        usd = table.cost(model, tokens, 0, batch=True)
        lines.append(f"{model}: ${usd:.6f}  (batch price ${price.batch_input}/M input tokens: "
                     f"50 % of ${price.input_per_million}, rounded up to the cent)")
    return lines or ["(none of the reference embedding models is in the price table)"]


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    home = Path(os.environ.get("DAGSTER_HOME") or ".data/dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    settings = home / "dagster.yaml"
    # The repo's instance settings (pool limits for submissions, no telemetry) when there are
    # none yet, or only the telemetry line earlier demos wrote.
    if not settings.exists() or settings.read_text() == "telemetry:\n  enabled: false\n":
        shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", settings)
    warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")
    t0 = time.perf_counter()
    wall0 = time.time()
    say("== batch-workflows demo: the Python language reference → batch embeddings → Qdrant")

    from dagster import DagsterInstance, materialize

    import assets.embeddings as flow
    from assets.lifecycle import partition_dir
    from batch_workflows.flows.embeddings.search import format_hit, search
    from batch_workflows.flows.embeddings.vectors import QdrantSettings
    from resources.artifacts import ArtifactStore
    from resources.batch import BatchResource
    from resources.vectors import QdrantResource

    # Runs get the EnvVar-configured resources (secrets resolved by Dagster, never shown);
    # the demo's own direct calls use resolved copies (an EnvVar reads as its name otherwise).
    resources = {"batch": BatchResource.from_env(), "artifacts": ArtifactStore.from_env(),
                 "qdrant": QdrantResource.from_env()}
    batch = resources["batch"].process_config_and_initialize()
    artifacts = resources["artifacts"]
    qdrant = resources["qdrant"].process_config_and_initialize()
    settings = flow.settings()
    instance = DagsterInstance.get()
    timings: dict[str, Any] = {"engine_start_seconds": 0.0}

    # 1. the engine
    started_engine = False
    if batch.provider == "local":
        if batch.engine_is_up():
            say(f"engine: using the local batch engine already running at {batch.resolved_base_url}")
        else:
            say(f"engine: starting the local batch engine at {batch.resolved_base_url} "
                f"(state in {batch.engine_data_dir}, log {batch.engine_data_dir}/engine.log) ...")
            t = time.perf_counter()
            batch.ensure_local_engine()
            timings["engine_start_seconds"] = time.perf_counter() - t
            started_engine = True
            say(f"engine: up in {timings['engine_start_seconds']:.1f}s")
    else:
        say(f"engine: provider {batch.provider} at {batch.resolved_base_url} "
            "(batches may take up to the completion window)")

    # 2. partitions
    keys = flow.partition_keys()  # the shipped corpus's shards, then one per inbox file
    flow.register_partitions(instance, keys)
    say(f"partitions: {', '.join(keys)} (model {settings.model}, chunks of "
        f"{settings.chunk_tokens} tokens with {settings.chunk_overlap} overlap, "
        f"≤{settings.inputs_per_request} chunks per request)")
    with qdrant.open() as index:
        points_before = index.count()
    say(f"collection: {qdrant.describe()}: {points_before} points before this run")

    # 3. materialize every partition
    selection = [*flow.lifecycle.assets, flow.embeddings_index, *flow.lifecycle.checks,
                 flow.points_match_chunks, flow.chunks_retrieve_themselves]
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    created = reattached = 0
    step_totals: dict[str, float] = {}
    ok = True
    for key in keys:
        say(f"\n-- partition {key}")
        tag = uuid.uuid4().hex
        with batch.get_client() as client:
            watcher = RunWatcher(tag, wall0, client.retrieve_batch)
            watcher.start()
            result = materialize(selection, partition_key=key, resources=resources,
                                 instance=instance, run_config=quiet, raise_on_error=False,
                                 tags={"batch_workflows/demo": tag})
            watcher.stop.set()
            watcher.join()
        for step, secs in watcher.step_seconds.items():
            step_totals[step] = step_totals.get(step, 0.0) + secs
        for mat in result.get_asset_materialization_events():
            md = mat.materialization.metadata
            if mat.asset_key.to_user_string() == "embeddings_batch":
                created += int(md["batches_created"].value)
                reattached += int(bool(md["reattached"].value))
        if not result.success:
            ok = False
            say(f"   run {result.run_id} FAILED: see `make dev`")
    timings["flow_seconds"] = time.perf_counter() - t0 - timings["engine_start_seconds"]
    timings["steps"] = step_totals
    engine = _engine_seconds(batch, since=wall0)

    # 4. outputs, cost, second-run statement
    tokens = 0
    for key in keys:
        try:
            summary = json.loads(artifacts.read_bytes(f"{partition_dir(flow.NAME, key)}/summary.json"))
            tokens += int(summary.get("prompt_tokens") or 0)
        except (OSError, ValueError, KeyError):
            pass
    with qdrant.open() as index:
        points_after = index.count()
    say("\n== outputs")
    say(f"artifacts (shards, raw batch output, results Parquet, chunk tables): {artifacts.uri(flow.NAME)}")
    say(f"vectors: {qdrant.describe()}: {points_after} points")
    say(f"dagster runs: recorded under {home}; browse them with `make dev`")
    if created == 0 and reattached:
        say(f"second run: 0 batches submitted — re-attached to the existing batches of all "
            f"{reattached} partition(s); nothing paid twice. Points {points_before} → "
            f"{points_after}: " + ("collection unchanged." if points_after == points_before
                                   else "changed (the inputs changed)."))
    else:
        say(f"submitted {created} new batch(es); {reattached} partition(s) re-attached")
    say(f"\n== cost: {tokens:,} input tokens embedded; the same batch at a provider's batch price:")
    for line in _prices(tokens):
        say(f"   {line}")

    # 5. example searches
    base_url = batch.resolved_base_url if batch.provider == "local" and batch.engine_is_up() else None
    for query in EXAMPLE_QUERIES:
        say(f'\n== batch-workflows search "{query}" --limit 3')
        hits = search(query, 3, QdrantSettings.from_env(), base_url=base_url) or []
        for rank, hit in enumerate(hits, 1):
            say(format_hit(rank, hit))

    total = time.perf_counter() - t0
    timings.update(total_seconds=total, engine_seconds=engine + timings["engine_start_seconds"],
                   other_seconds=total - engine - timings["engine_start_seconds"],
                   batches_created=created, points=points_after, tokens=tokens)
    # Kept apart: a run that embedded (first) and one that re-attached (second).
    record = json.loads(TIMINGS_PATH.read_text()) if TIMINGS_PATH.exists() else {}
    record["first_run" if created else "rerun"] = timings
    TIMINGS_PATH.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_PATH.write_text(json.dumps(record, indent=2))
    say(f"\n== done in {total:.0f}s: engine {timings['engine_seconds']:.0f}s "
        f"(start {timings['engine_start_seconds']:.0f}s + running the batches "
        f"{engine:.0f}s), everything else {timings['other_seconds']:.0f}s")
    if started_engine:
        _stop_engine(Path(batch.engine_data_dir))
    return 0 if ok else 1


def _engine_seconds(batch: Any, since: float) -> float:
    """Time the engine spent running this demo's batches: in_progress_at → the terminal stamp.

    Upload, validation queueing, download, join and indexing are not engine time."""
    from batch_workflows.lifecycle import iter_lifecycle_batches

    total = 0.0
    with batch.get_client() as client:
        for b in iter_lifecycle_batches(client, asset="embeddings", created_after=int(since)):
            started = b.get("in_progress_at")
            ended = b.get("completed_at") or b.get("expired_at") or b.get("cancelled_at")
            if started and ended:
                total += ended - started
    return total


def _stop_engine(data_dir: Path) -> None:
    """Stop the engine this demo started (its batches are finished; its state stays on disk)."""
    pid_file = data_dir / "engine.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        say(f"stopped the local engine this demo started (pid {pid}); `make dev` starts it again")
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
