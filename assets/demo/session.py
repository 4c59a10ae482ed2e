"""The demo's session: a persistent Dagster instance, resources from the environment, the local
engine (started when nothing answers), and one materialization per partition, watched."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets.demo.console import RunWatcher, say
from assets.instance import prepare_dagster_home

TIMINGS_PATH = Path(".data/demo-timings.json")
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Materialized:
    """One partition's run: its result and how long each step took."""

    result: Any
    step_seconds: dict[str, float]

    def metadata(self, asset: str) -> dict[str, Any] | None:
        """The metadata values of `asset`'s materialization in this run (None: not materialized)."""
        for mat in self.result.get_asset_materialization_events():
            if mat.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in mat.materialization.metadata.items()}
        return None


@dataclass
class Session:
    """What every part of the demo shares."""

    home: Path
    resources: dict[str, Any]  # EnvVar-configured, for the runs (Dagster resolves the secrets)
    batch: Any  # resolved copies, for the demo's own direct calls
    artifacts: Any
    qdrant: Any
    instance: Any
    wall0: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    engine_start_seconds: float = 0.0
    started_engine: bool = False

    def materialize(self, selection: list[Any], partition: str) -> Materialized:
        """Materialize `selection` for one partition, printing its progress as it runs."""
        from dagster import materialize

        tag = uuid.uuid4().hex
        with self.batch.get_client(self.artifacts) as client:
            watcher = RunWatcher(tag, self.wall0, client.retrieve_batch)
            watcher.start()
            try:
                result = materialize(selection, partition_key=partition, resources=self.resources,
                                     instance=self.instance, run_config=QUIET,
                                     raise_on_error=False, tags={"batch_workflows/demo": tag})
            finally:
                watcher.stop.set()
                watcher.join()
        if not result.success:
            say(f"   run {result.run_id} FAILED: see `make dev`")
        return Materialized(result, watcher.step_seconds)


def open_session() -> Session:
    """The instance under DAGSTER_HOME (.data/dagster), with the repo's settings, and resources."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    home = prepare_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

    from dagster import DagsterInstance

    from resources import build_resources  # the code location's, without loading its flows

    resources = build_resources()
    return Session(home, resources, resources["batch"].process_config_and_initialize(),
                   resources["artifacts"], resources["qdrant"].process_config_and_initialize(),
                   DagsterInstance.get())


def start_engine(session: Session) -> None:
    """Use the engine that answers at the base URL, or start the embedded one."""
    batch = session.batch
    if batch.provider != "local":
        say(f"engine: provider {batch.provider} at {batch.resolved_base_url} "
            "(batches may take up to the completion window)")
    elif batch.engine_is_up():
        say(f"engine: using the local batch engine already running at {batch.resolved_base_url}")
    else:
        say(f"engine: starting the local batch engine at {batch.resolved_base_url} "
            f"(state in {batch.engine_data_dir}, log {batch.engine_data_dir}/engine.log) ...")
        t = time.perf_counter()
        batch.ensure_local_engine()
        session.engine_start_seconds = time.perf_counter() - t
        session.started_engine = True
        say(f"engine: up in {session.engine_start_seconds:.1f}s")


def stop_engine(session: Session) -> None:
    """Stop the engine this demo started (its batches are finished; its state stays on disk)."""
    if not session.started_engine:
        return
    pid_file = Path(session.batch.engine_data_dir) / "engine.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError) as exc:
        say(f"could not stop the local engine ({exc}); its pid is in {pid_file}")
        return
    say(f"stopped the local engine this demo started (pid {pid}); `make dev` starts it again")


def engine_seconds(session: Session, asset: str) -> float:
    """Time the engine spent running this demo's batches of `asset`: in_progress_at → the
    terminal stamp (upload, queueing, download, join and indexing are not engine time)."""
    from batch_workflows.lifecycle import iter_lifecycle_batches

    total = 0.0
    with session.batch.get_client(session.artifacts) as client:
        for b in iter_lifecycle_batches(client, asset=asset, created_after=int(session.wall0)):
            started = b.get("in_progress_at")
            ended = b.get("completed_at") or b.get("expired_at") or b.get("cancelled_at")
            if started and ended:
                total += ended - started
    return total


def record_timings(timings: dict[str, Any], first_run: bool) -> None:
    """Keep the figures of a run that did the work (first) apart from one that re-attached."""
    record = json.loads(TIMINGS_PATH.read_text()) if TIMINGS_PATH.exists() else {}
    record["first_run" if first_run else "rerun"] = timings
    TIMINGS_PATH.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_PATH.write_text(json.dumps(record, indent=2))
