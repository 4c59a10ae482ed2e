"""Lifecycle benchmarks: a sensor tick over many in-flight batches; overhead of a 1-request batch.

1. **Sensor tick.** A local engine that admits no batch (``--max-concurrent-batches 0``) holds
   N in-flight batches (500 at full scale), one per partition of a lifecycle asset. Timed: the
   tracking pass of ``<name>_batch_sensor`` (first tick without cursor, then a tick with it) and
   the whole sensor evaluation through ``build_sensor_context`` with a real Dagster instance,
   beside the bare paginated list call (``client.list_batches()``). Target: a tick well inside
   Dagster's 60 s sensor limit (< 5 s).
2. **Overhead of a 1-request batch.** On a normal local engine: validate + shard + submit (with
   the idempotency look-ups) + wait + collect (download, join to Parquet) through
   ``batch_workflows.lifecycle``, beside the bare client calls doing the same job (upload,
   create, poll, download) with the same poll interval; and the same through
   ``dagster.materialize`` of the factory's three assets. Both include the engine's own
   processing, so the difference is the lifecycle's overhead. Median of several runs.

Run alone: ``.venv/bin/python -m bench.lifecycle [--scale small|full]``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench import run_alone

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "lifecycle"
MODEL = "all-MiniLM-L6-v2"
POLL = 0.05
# Dagster's console logger prints every step event at DEBUG; the figures are what matters here.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _server(name: str, **options):
    sys.path.insert(0, str(ROOT / "tests"))
    from support.server import start_server

    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return start_server(folder, **options)


def _request_line(i: int, prefix: str = "r") -> str:
    return json.dumps({"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": MODEL, "input": f"benchmark text {i}"}}) + "\n"


def _fig(name: str, value: float, unit: str, baseline: float | None, target: str,
         met: bool | None = None) -> dict:
    ratio = round(value / baseline, 3) if baseline else None
    out = {"name": name, "value": round(value, 4), "unit": unit,
           "baseline": round(baseline, 4) if baseline is not None else None, "ratio": ratio,
           "target": target}
    if met is not None:
        out["met"] = met
    return out


# -- 1. sensor tick -----------------------------------------------------------------------------

def bench_sensor(n_batches: int, repeats: int) -> list[dict]:
    from dagster import DagsterInstance, DynamicPartitionsDefinition, build_sensor_context

    from batch_workflows import lifecycle as lc
    from batch_workflows.client import BatchClient
    from batch_workflows.dagster import ArtifactStore, BatchResource, batch_lifecycle
    from batch_workflows.profiles import EMBEDDINGS

    name = f"bench{uuid.uuid4().hex[:6]}"
    with _server("sensor", max_concurrent_batches=0) as srv, \
            BatchClient(srv.base_url, api_key=srv.api_key) as client:
        path = WORK / "one.jsonl"
        path.write_text(_request_line(0))
        file_id = client.upload_file(path)["id"]
        for i in range(n_batches):  # one in-flight batch per partition, as submit() labels them
            meta = lc.batch_metadata(f"{i:064x}", name, f"p{i:04d}", 1, 0, 1)
            client.create_batch(file_id, EMBEDDINGS, metadata=meta)

        def bare() -> float:
            t = time.perf_counter()
            found = sum(1 for _ in client.list_batches(limit=100))
            assert found >= n_batches
            return time.perf_counter() - t

        def first_tick() -> float:
            t = time.perf_counter()
            tick = lc.track_batches(client, name, None)
            assert tick.in_flight == n_batches and len(tick.observations) == n_batches
            return time.perf_counter() - t

        cursor = lc.track_batches(client, name, None).cursor

        def next_tick() -> float:
            t = time.perf_counter()
            tick = lc.track_batches(client, name, cursor)
            assert tick.in_flight == n_batches and not tick.observations and not tick.ready
            return time.perf_counter() - t

        flow = batch_lifecycle(name, DynamicPartitionsDefinition(name=f"{name}_parts"),
                               EMBEDDINGS, lambda context: [])
        resources = {"batch": BatchResource(provider="local", base_url=srv.base_url,
                                            start_local_engine=False, blocking=False),
                     "artifacts": ArtifactStore(base_uri=str(WORK / "artifacts"))}

        with DagsterInstance.ephemeral() as instance:
            # The partitions the batches name: the sensor skips batches of unknown partitions.
            instance.add_dynamic_partitions(f"{name}_parts", [f"p{i:04d}" for i in range(n_batches)])

            def sensor_tick() -> float:
                t = time.perf_counter()
                result = flow.sensor(build_sensor_context(instance=instance, resources=resources))
                assert len(result.asset_events) == n_batches and not result.run_requests
                return time.perf_counter() - t

            bare()  # warm the connection
            samples = {k: [] for k in ("bare", "first", "next", "sensor")}
            for _ in range(repeats):
                samples["bare"].append(bare())
                samples["first"].append(first_tick())
                samples["next"].append(next_tick())
                samples["sensor"].append(sensor_tick())
    med = {k: statistics.median(v) for k, v in samples.items()}
    return [
        _fig(f"sensor_tracking_first_tick_{n_batches}_in_flight", med["first"], "s",
             med["bare"], "< 5 s", med["first"] < 5),
        _fig(f"sensor_tracking_tick_with_cursor_{n_batches}_in_flight", med["next"], "s",
             med["bare"], "< 5 s", med["next"] < 5),
        _fig(f"sensor_evaluation_dagster_{n_batches}_in_flight", med["sensor"], "s",
             med["bare"], "< 5 s", med["sensor"] < 5),
    ]


# -- 2. overhead of a 1-request batch ------------------------------------------------------------

def bench_overhead(repeats: int) -> list[dict]:
    from dagster import DagsterInstance, StaticPartitionsDefinition, materialize

    from batch_workflows import lifecycle as lc
    from batch_workflows.client import BatchClient
    from batch_workflows.dagster import ArtifactStore, BatchResource, batch_lifecycle
    from batch_workflows.profiles import EMBEDDINGS, get_profile
    from batch_workflows.requests import write_shards
    from batch_workflows.wire import is_terminal

    profile = get_profile("local")
    with _server("overhead") as srv, BatchClient(srv.base_url, api_key=srv.api_key) as client:

        def bare(i: int) -> float:
            path = WORK / f"bare-{i}.jsonl"
            path.write_text(_request_line(i, "bare"))
            t = time.perf_counter()
            file_id = client.upload_file(path)["id"]
            batch = client.create_batch(file_id, EMBEDDINGS)
            while not is_terminal(batch):
                time.sleep(POLL)
                batch = client.retrieve_batch(batch["id"])
            client.download_file(batch["output_file_id"], WORK / f"bare-{i}.out.jsonl")
            return time.perf_counter() - t

        def lifecycle(i: int) -> float:
            work = WORK / f"lc-{i}"
            shutil.rmtree(work, ignore_errors=True)
            t = time.perf_counter()
            manifest = write_shards([json.loads(_request_line(i, "lc"))], work / "shards",
                                    profile, endpoint=EMBEDDINGS)
            paths = [s.path for s in manifest.shards]
            key = lc.submission_key("bench", str(i), EMBEDDINGS, manifest.content_hash + str(t),
                                    manifest.model)
            sub = lc.submit(client, paths, key, asset="bench", partition=str(i),
                            endpoint=EMBEDDINGS, request_counts=[1])
            batches = lc.wait(client, sub.batch_ids, poll_interval=POLL, timeout=300)
            result = lc.collect(client, sub, batches, paths, work / "collect")
            assert result.counts == {"succeeded": 1}
            return time.perf_counter() - t

        tag = uuid.uuid4().hex[:6]
        flow = batch_lifecycle(f"bench{tag}", StaticPartitionsDefinition(
            [str(i) for i in range(repeats + 1)]), EMBEDDINGS,
            lambda context: [json.loads(_request_line(int(context.partition_key), tag))])
        resources = {"batch": BatchResource(provider="local", base_url=srv.base_url,
                                            start_local_engine=False, blocking=True,
                                            poll_interval_seconds=POLL),
                     "artifacts": ArtifactStore(base_uri=str(WORK / "artifacts"))}

        with DagsterInstance.ephemeral() as instance:
            def dagster_run(i: int) -> float:
                t = time.perf_counter()
                result = materialize(flow.assets, partition_key=str(i), instance=instance,
                                     resources=resources, run_config=QUIET)
                assert result.success
                return time.perf_counter() - t

            bare(-1), lifecycle(-1), dagster_run(repeats)  # warm: model load, imports
            samples = {k: [] for k in ("bare", "lifecycle", "dagster")}
            for i in range(repeats):
                samples["bare"].append(bare(i))
                samples["lifecycle"].append(lifecycle(i))
                samples["dagster"].append(dagster_run(i))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return [
        _fig("one_request_lifecycle_overhead", (med["lifecycle"] - med["bare"]) * 1000, "ms",
             med["bare"] * 1000, "< 1000 ms over the bare calls",
             (med["lifecycle"] - med["bare"]) < 1.0),
        _fig("one_request_lifecycle_wall", med["lifecycle"], "s", med["bare"], "-"),
        _fig("one_request_dagster_materialize_wall", med["dagster"], "s", med["bare"],
             "< 10 s", med["dagster"] < 10),
    ]


def run(scale: str) -> list[dict]:
    """Figures at `scale` ("full": 500 in-flight batches, 5 runs; "small": 100, 3)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    WORK.mkdir(parents=True, exist_ok=True)
    n, repeats = (500, 5) if scale == "full" else (100, 3)
    return bench_sensor(n, repeats) + bench_overhead(repeats)


if __name__ == "__main__":
    run_alone("lifecycle", run)
