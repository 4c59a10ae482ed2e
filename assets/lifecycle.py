"""Reusable submit → track → collect assets, sensor and checks (DESIGN.md §4).

``batch_lifecycle(name, partitions_def, endpoint, build_requests)`` defines, for one flow:

* ``<name>_requests`` — calls ``build_requests(context, **inputs)`` for the partition, validates
  and writes the shards and their manifest to the artifact store;
* ``<name>_batch`` — uploads and creates one batch per shard, recording the submission manifest.
  Unchanged content re-attaches to the existing batches (found through one scan of the
  provider's list; only the shards still to upload are fetched from the store) and submits
  nothing; changed content cancels the partition's older batches. The budget is checked first:
  above ``max_cost_usd`` it raises BudgetExceededError having submitted nothing and cancelled
  nothing. Waits for room under the provider's in-flight limit;
* ``<name>_results`` — collects: downloads output/error files, joins on ``custom_id``,
  resubmits failed/expired/missing requests up to ``max_attempts`` (each resubmission checked
  against the budget too), writes the results Parquet and reports counts, error breakdown,
  tokens, cost at the batch rate and time to complete. In blocking mode (default for the local
  engine) it waits inside the run, and terminating the run cancels the batches. Otherwise it
  materializes nothing until the batches are terminal: the sensor requests it then;
* ``<name>_batch_sensor`` — one paginated list call per tick over the provider's batches;
  reports progress as AssetObservations of ``<name>_batch`` and requests the ``<name>_results``
  run of a partition once all its batches are terminal (``run_key`` = submission and attempt);
* checks ``all_requests_accounted`` (one row per submitted ``custom_id``, no result line for an
  id never submitted, no duplicate lines) and ``error_rate`` on ``<name>_results``.

**Concurrency.** Both ``<name>_batch`` and ``<name>_results`` create batches (the latter when
it resubmits), so both run in the provider's Dagster concurrency pool (``batch_submit_<provider>``,
from BATCH_PROVIDER, as the batch resource; see ``resources.batch.default_pool``). The repo's
``dagster.yaml`` (copied into DAGSTER_HOME by ``make dev`` and the demo when it has none) gives
every pool ``default_limit: 1``: submissions to one provider are serialised, so the
check-then-act of ``wait_for_capacity`` (count in-flight, then create) cannot be interleaved
with another submission, and two runs of one partition cannot both miss each other's batches
and create the same key twice. The price: in blocking mode a results step holds the slot while
it waits, so partitions are collected one after another; that mode is meant for the local
engine and CI. In the default non-blocking mode a results step runs only once its batches are
terminal and holds the slot for the download, join and resubmission only.

Long partition keys: batch metadata values are limited to 512 characters, so a longer key is
written as ``sha256:<hex>``; the batch asset records the full key under
``<name>/_partition_keys/<hex>`` and the sensor reads it back from there.

Downstream assets depend on ``<name>_results`` (``deps=[lifecycle.results]``) and read the rows
with ``load_results(artifacts, name, partition_key)`` or fetch the file with
``fetch_results(...)``; ``results_key(name, partition_key)`` is its artifact key.

Artifact layout under the store (``<p>`` = the quoted partition key, ``_all`` unpartitioned)::

    <name>/<p>/requests.json              current shard manifest + submission key
    <name>/<p>/submission.json            current submission manifest (attempt 1)
    <name>/<p>/results.parquet            final results (one row per custom_id)
    <name>/<p>/summary.json               figures behind the metadata and checks
    <name>/<p>/<key16>/requests/…         shards
    <name>/<p>/<key16>/attempt-<n>/…      submission.json, raw/…-output.jsonl, results.parquet
"""


import hashlib
import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    asset_check,
    sensor,
)
from dagster._core.errors import DagsterExecutionInterruptedError

from batch_workflows import lifecycle as lc
from batch_workflows.errors import BudgetExceededError, ConfigurationError
from batch_workflows.parquet import open_parquet
from batch_workflows.results import SUCCEEDED, ResultSet
from batch_workflows.wire import BatchRequest
from resources.artifacts import ArtifactStore
from resources.batch import BatchResource, default_pool

UNPARTITIONED = "_all"
# A quoted partition key longer than this (a file name limit) becomes a prefix plus a digest.
MAX_SEGMENT = 255
SAMPLE_ROWS = 20
CHECK_ACCOUNTED = "all_requests_accounted"
CHECK_ERROR_RATE = "error_rate"

RequestBuilder = Callable[..., Iterable[Mapping[str, Any] | BatchRequest]]


# -- artifact keys and the downstream helpers ---------------------------------------------------

def partition_dir(name: str, partition_key: str | None) -> str:
    """``<name>/<quoted partition>``: the artifact folder of one partition."""
    if not partition_key:
        return f"{name}/{UNPARTITIONED}"
    segment = quote(partition_key, safe="-_=+,@")
    if segment in (".", ".."):  # not a valid path segment
        segment = segment.replace(".", "%2E")
    if len(segment) > MAX_SEGMENT:  # file systems cap a name at 255 bytes
        digest = hashlib.sha256(partition_key.encode()).hexdigest()[:32]
        segment = f"{segment[:MAX_SEGMENT - 34]}~{digest}"
    return f"{name}/{segment}"


def _partition_index_key(name: str, tag: str) -> str | None:
    """Where the full key of a hashed partition tag (``sha256:<hex>``) is recorded."""
    if not tag.startswith("sha256:"):
        return None
    return f"{name}/_partition_keys/{tag.removeprefix('sha256:')}"


def remember_partition(store: ArtifactStore, name: str, partition_key: str | None) -> None:
    """Record a partition key too long for batch metadata, so the sensor can recover it."""
    tag = lc.partition_tag(partition_key)
    if partition_key and tag != partition_key:
        store.write_bytes(_partition_index_key(name, tag), partition_key.encode())


def partition_from_tag(store: ArtifactStore, name: str, tag: str,
                       known_keys: Callable[[], Iterable[str]] | None = None) -> str | None:
    """The partition key behind a batch's partition tag (None when it cannot be recovered).

    A short key is its own tag. A hashed one is looked up where the batch asset recorded it,
    else among `known_keys()` (the partitions definition's keys), hashing each.
    """
    index = _partition_index_key(name, tag)
    if index is None:
        return tag
    if store.exists(index):
        return store.read_bytes(index).decode()
    for key in known_keys() if known_keys is not None else ():
        if lc.partition_tag(key) == tag:
            return key
    return None


def results_key(name: str, partition_key: str | None) -> str:
    """Artifact key of the final results Parquet of a partition."""
    return f"{partition_dir(name, partition_key)}/results.parquet"


def fetch_results(artifacts: ArtifactStore, name: str, partition_key: str | None,
                  local_path: str | Path) -> Path:
    """Copy a partition's results Parquet to `local_path` (streamed) and return the path."""
    return artifacts.get_file(results_key(name, partition_key), local_path)


def load_results(artifacts: ArtifactStore, name: str, partition_key: str | None,
                 columns: Sequence[str] | None = None, status: str | None = "succeeded") -> Any:
    """A partition's results as a pandas DataFrame (rows with `status`; None = all rows)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="bw-results-") as tmp:
        path = fetch_results(artifacts, name, partition_key, Path(tmp) / "results.parquet")
        filters = [("status", "=", status)] if status else None
        table = pq.read_table(path, columns=list(columns) if columns else None, filters=filters)
        return table.to_pandas()


# -- the factory --------------------------------------------------------------------------------

@dataclass
class BatchLifecycle:
    """What `batch_lifecycle` defines; pass ``.assets``, ``.sensors``, ``.checks`` to Definitions."""

    name: str
    requests: AssetsDefinition
    batch: AssetsDefinition
    results: AssetsDefinition
    sensor: SensorDefinition
    checks: list[AssetChecksDefinition]

    @property
    def assets(self) -> list[AssetsDefinition]:
        return [self.requests, self.batch, self.results]

    @property
    def sensors(self) -> list[SensorDefinition]:
        return [self.sensor]

    @property
    def results_asset_key(self) -> AssetKey:
        return self.results.key

    def results_key(self, partition_key: str | None) -> str:
        return results_key(self.name, partition_key)

    def load_results(self, artifacts: ArtifactStore, partition_key: str | None, **kw: Any) -> Any:
        return load_results(artifacts, self.name, partition_key, **kw)


def batch_lifecycle(
    name: str,
    partitions_def: PartitionsDefinition | None,
    endpoint: str,
    build_requests: RequestBuilder,
    *,
    params: Mapping[str, Any] | None = None,
    ins: Mapping[str, AssetIn] | None = None,
    deps: Sequence[Any] | None = None,
    requests_resource_keys: Iterable[str] = (),
    batch_resource_key: str = "batch",
    artifacts_resource_key: str = "artifacts",
    group_name: str | None = None,
    pool: str | None = None,
    max_error_rate: float = 0.05,
    batch_metadata: Mapping[str, str] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    sensor_interval_seconds: int = 15,
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> BatchLifecycle:
    """Define the requests/batch/results assets, the tracking sensor and the checks of a flow.

    `build_requests(context, **inputs)` returns the request lines (dicts or BatchRequest) of
    ``context.partition_key``; `inputs` are the values of `ins`. `params` (e.g. generation
    settings not visible in the lines) enter the idempotency key. `pool` defaults to
    ``batch_submit_<BATCH_PROVIDER>`` (``resources.batch.default_pool``, the pool of the
    provider ``BatchResource.from_env`` talks to); `max_error_rate` is the error-rate check's
    threshold.
    """
    pool_given = pool is not None
    if pool is None:
        pool = default_pool()
    params = dict(params or {})
    group = group_name or name
    requests_name, batch_name, results_name = f"{name}_requests", f"{name}_batch", f"{name}_results"
    resource_keys = {batch_resource_key, artifacts_resource_key}

    def _resources(context: Any) -> tuple[BatchResource, ArtifactStore]:
        return (getattr(context.resources, batch_resource_key),
                getattr(context.resources, artifacts_resource_key))

    def _pkey(context: Any) -> str | None:
        return context.partition_key if partitions_def is not None else None

    def _check_pool(context: Any, batch_res: BatchResource) -> None:
        if not pool_given and batch_res.pool != pool:
            context.log.warning(
                f"this step runs in pool {pool!r} (BATCH_PROVIDER) but the batch resource talks "
                f"to provider {batch_res.provider!r}: pass pool={batch_res.pool!r} to "
                "batch_lifecycle so that all submissions to one provider share one pool")

    # ---- <name>_requests -------------------------------------------------------------------
    @asset(
        name=requests_name,
        partitions_def=partitions_def,
        ins=dict(ins or {}),
        deps=list(deps or []),
        required_resource_keys=resource_keys | set(requests_resource_keys),
        group_name=group,
        kinds={"python"},
        description=f"Validated request shards of {name} and their manifest.",
    )
    def requests_asset(context: AssetExecutionContext, **inputs: Any) -> MaterializeResult:
        from batch_workflows.requests.shards import write_shards

        batch_res, store = _resources(context)
        profile = batch_res.get_profile()
        pkey = _pkey(context)
        folder = partition_dir(name, pkey)
        with tempfile.TemporaryDirectory(prefix="bw-shards-") as tmp:
            manifest = write_shards(build_requests(context, **inputs), tmp, profile,
                                    endpoint=endpoint)
            if not manifest.shards:
                raise ConfigurationError(f"{requests_name}: no requests for partition {pkey!r}")
            key = lc.submission_key(name, pkey, endpoint, manifest.content_hash, manifest.model,
                                    params)
            shard_keys = []
            for shard in manifest.shards:
                shard_key = f"{folder}/{key[:16]}/requests/{Path(shard.path).name}"
                store.put_file(shard.path, shard_key)
                shard_keys.append(shard_key)
        pointer = {
            "key": key,
            "asset": name,
            "partition": pkey,
            "endpoint": endpoint,
            "model": manifest.model,
            "params": params,
            "content_hash": manifest.content_hash,
            "total_requests": manifest.total_requests,
            "shards": [
                {"artifact": k, "lines": s.lines, "bytes": s.bytes, "sha256": s.sha256}
                for k, s in zip(shard_keys, manifest.shards, strict=True)
            ],
        }
        uri = store.write_bytes(f"{folder}/requests.json", orjson.dumps(pointer, option=orjson.OPT_INDENT_2))
        return MaterializeResult(metadata={
            "submission_key": key,
            "content_hash": manifest.content_hash,
            "requests": manifest.total_requests,
            "shards": len(manifest.shards),
            "bytes": manifest.total_bytes,
            "model": manifest.model or "",
            "manifest": MetadataValue.path(uri),
        })

    # ---- <name>_batch ----------------------------------------------------------------------
    @asset(
        name=batch_name,
        partitions_def=partitions_def,
        deps=[requests_asset],
        required_resource_keys=resource_keys,
        group_name=group,
        pool=pool,
        kinds={"python"},
        description=f"Batches of {name} at the provider (submitted once per content).",
    )
    def batch_asset(context: AssetExecutionContext) -> MaterializeResult:
        batch_res, store = _resources(context)
        _check_pool(context, batch_res)
        pkey = _pkey(context)
        folder = partition_dir(name, pkey)
        pointer = json.loads(store.read_bytes(f"{folder}/requests.json"))
        key = pointer["key"]
        remember_partition(store, name, pkey)
        with batch_res.get_client() as client, tempfile.TemporaryDirectory(prefix="bw-sub-") as tmp:
            existing = lc.find_submission(client, key, 1)  # the one scan of the provider's list
            # Fetch only the shards still to upload; submit() never reads the others.
            paths = [s["artifact"] if i in existing
                     else str(store.get_file(s["artifact"], Path(tmp) / f"shard-{i:05d}.jsonl"))
                     for i, s in enumerate(pointer["shards"])]
            missing = [p for i, p in enumerate(paths) if i not in existing]
            # Budget before anything changes at the provider: a refusal cancels nothing either.
            estimate = batch_res.check_budget(missing) if missing else None
            superseded = lc.cancel_partition(client, name, pkey, keep_key=key)
            for b in superseded:
                context.log.info(f"cancelled superseded batch {b.get('id')}")
            profile = batch_res.get_profile()
            manifest = lc.submit(
                client, paths, key, asset=name, partition=pkey, endpoint=pointer["endpoint"],
                model=pointer.get("model"), attempt=1,
                completion_window=batch_res.completion_window,
                metadata=batch_metadata, extra_body=extra_body,
                request_counts=[s["lines"] for s in pointer["shards"]],
                max_in_flight=profile.max_batches_in_flight,
                poll_interval=batch_res.poll_interval_seconds,
                capacity_timeout=batch_res.wait_timeout,
                existing=existing,
            )
        for sb, shard in zip(manifest.batches, pointer["shards"], strict=True):
            sb.input_path = shard["artifact"]
        data = manifest.to_json()
        store.write_bytes(f"{folder}/{key[:16]}/attempt-1/submission.json", data)
        uri = store.write_bytes(f"{folder}/submission.json", data)
        if manifest.reattached:
            context.log.info(f"re-attached to {len(manifest.batches)} existing batch(es); "
                             "nothing submitted")
        metadata: dict[str, Any] = {
            "submission_key": key,
            "batch_ids": MetadataValue.json(manifest.batch_ids),
            "file_ids": MetadataValue.json(manifest.file_ids),
            "request_counts": MetadataValue.json(manifest.request_counts),
            "requests": manifest.total_requests,
            "batches_created": manifest.created,
            "reattached": manifest.reattached,
            "superseded_cancelled": MetadataValue.json([b.get("id") for b in superseded]),
            "provider": batch_res.provider,
            "manifest": MetadataValue.path(uri),
        }
        if estimate is not None:
            metadata["estimated_cost_usd"] = float(estimate)
        return MaterializeResult(metadata=metadata)

    # ---- <name>_results --------------------------------------------------------------------
    @asset(
        name=results_name,
        partitions_def=partitions_def,
        deps=[batch_asset],
        required_resource_keys=resource_keys,
        group_name=group,
        pool=pool,  # it resubmits: same pool as the batch asset (see the module doc)
        output_required=False,  # nothing is materialized while batches are still running
        kinds={"parquet"},
        description=f"Results of {name}: one row per custom_id (Parquet in the artifact store).",
    )
    def results_asset(context: AssetExecutionContext):
        batch_res, store = _resources(context)
        _check_pool(context, batch_res)
        pkey = _pkey(context)
        outcome = _collect_partition(context, batch_res, store, name, pkey)
        if outcome is None:
            return
        yield MaterializeResult(metadata=outcome)

    # ---- checks ----------------------------------------------------------------------------
    # Partitioned asset checks are a Dagster preview feature: accepted knowingly, not warned about.
    warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*",
                            category=PreviewWarning)

    @asset_check(
        asset=results_asset,
        name=CHECK_ACCOUNTED,
        partitions_def=partitions_def,
        required_resource_keys={artifacts_resource_key},
        description="Every submitted custom_id has exactly one row in the results, and no "
                    "result line came back for an id never submitted or twice for one id.",
    )
    def accounted_check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        store = getattr(context.resources, artifacts_resource_key)
        summary = _read_summary(store, name, _check_pkey(context, partitions_def))
        ok, figures = requests_accounted(summary)
        return AssetCheckResult(passed=ok, metadata={
            **figures, "unexpected_sample": MetadataValue.json(summary.get("unexpected_sample", []))})

    @asset_check(
        asset=results_asset,
        name=CHECK_ERROR_RATE,
        partitions_def=partitions_def,
        required_resource_keys={artifacts_resource_key},
        description=f"Share of requests not succeeded after every attempt ≤ {max_error_rate:.2%}.",
    )
    def error_rate_check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        store = getattr(context.resources, artifacts_resource_key)
        summary = _read_summary(store, name, _check_pkey(context, partitions_def))
        rate = summary["error_rate"]
        return AssetCheckResult(
            passed=rate <= max_error_rate,
            severity=AssetCheckSeverity.ERROR,
            metadata={"error_rate": rate, "threshold": max_error_rate,
                      "unfinished": summary["unfinished"],
                      "error_breakdown": MetadataValue.json(summary["error_breakdown"])})

    checks = [accounted_check, error_rate_check]

    # ---- <name>_batch_sensor ---------------------------------------------------------------
    @sensor(
        name=f"{name}_batch_sensor",
        minimum_interval_seconds=sensor_interval_seconds,
        asset_selection=[results_asset.key],
        required_resource_keys={batch_resource_key, artifacts_resource_key},
        default_status=sensor_default_status,
        description=f"Tracks the in-flight batches of {name}; requests {results_name} when done.",
    )
    def batch_sensor(context: SensorEvaluationContext, **_direct: Any):
        # direct invocation (build_sensor_context) also passes the resources as keywords
        batch_res: BatchResource = getattr(context.resources, batch_resource_key)
        store: ArtifactStore = getattr(context.resources, artifacts_resource_key)
        if batch_res.is_blocking:
            return SkipReason("blocking mode: runs wait for their own batches")
        with batch_res.get_client() as client:
            tick = track_batches(client, name, context.cursor,
                                 horizon_seconds=lc.parse_duration(batch_res.completion_window))
        keys: dict[str, str | None] = {}

        def partition(tag: str | None) -> str | None:
            """The real partition key of a metadata tag (hashed when the key is long)."""
            if partitions_def is None or tag is None:
                return None
            if tag not in keys:
                keys[tag] = partition_from_tag(
                    store, name, tag,
                    lambda: partitions_def.get_partition_keys(
                        dynamic_partitions_store=context.instance))
                if keys[tag] is None:
                    context.log.warning(f"{name}: no partition key found for tag {tag[:80]!r}")
            return keys[tag]

        events = [
            AssetObservation(asset_key=batch_asset.key, partition=partition(p), metadata=m)
            for p, m in tick.observations
            if partitions_def is None or partition(p) is not None
        ]
        runs = [
            RunRequest(run_key=f"{results_name}:{partition(p)}:{marker}",
                       partition_key=partition(p),
                       asset_selection=[results_asset.key],  # its checks come along
                       tags={"batch_workflows/submission": marker})
            for p, marker in tick.ready
            if partitions_def is None or partition(p) is not None
        ]
        if not runs and not events:
            return SensorResult(skip_reason=SkipReason(tick.describe()), cursor=tick.cursor)
        return SensorResult(run_requests=runs, asset_events=events, cursor=tick.cursor)

    return BatchLifecycle(name, requests_asset, batch_asset, results_asset, batch_sensor, checks)


def requests_accounted(summary: Mapping[str, Any]) -> tuple[bool, dict[str, int]]:
    """The all_requests_accounted verdict on a summary.json, and the figures behind it.

    Passes when every submitted custom_id has its row, and no result line came back for an id
    never submitted (``unexpected``) nor twice for one id (``duplicates``).
    """
    figures = {k: int(summary.get(k) or 0) for k in ("submitted", "rows", "unexpected",
                                                      "duplicates")}
    ok = (figures["rows"] == figures["submitted"]
          and figures["unexpected"] == 0 and figures["duplicates"] == 0)
    return ok, figures


def _check_pkey(context: AssetCheckExecutionContext, partitions_def: Any) -> str | None:
    return context.partition_key if partitions_def is not None else None


def _read_summary(store: ArtifactStore, name: str, pkey: str | None) -> dict[str, Any]:
    return json.loads(store.read_bytes(f"{partition_dir(name, pkey)}/summary.json"))


# -- collect (the body of <name>_results) -------------------------------------------------------

def _attempt_dir(folder: str, key: str, attempt: int) -> str:
    return f"{folder}/{key[:16]}/attempt-{attempt}"


def _load_attempts(store: ArtifactStore, folder: str, key: str) -> list[lc.SubmissionManifest]:
    attempts = []
    n = 1
    while store.exists(f"{_attempt_dir(folder, key, n)}/submission.json"):
        data = store.read_bytes(f"{_attempt_dir(folder, key, n)}/submission.json")
        attempts.append(lc.SubmissionManifest.from_json(data))
        n += 1
    return attempts


def _join_figures(store: ArtifactStore, adir: str) -> dict[str, Any]:
    """The join's unexpected/duplicate counts of a collected attempt (not in its rows)."""
    key = f"{adir}/join.json"
    return json.loads(store.read_bytes(key)) if store.exists(key) else {}


def _collect_partition(context: AssetExecutionContext, batch_res: BatchResource,
                       store: ArtifactStore, name: str, pkey: str | None) -> dict | None:
    """Collect a partition; None when its batches are still running (non-blocking mode)."""
    folder = partition_dir(name, pkey)
    pointer = json.loads(store.read_bytes(f"{folder}/requests.json"))
    key = pointer["key"]
    attempts = _load_attempts(store, folder, key)
    if not attempts:
        raise ConfigurationError(
            f"{name}: no submission for partition {pkey!r} (materialize {name}_batch first)")
    profile = batch_res.get_profile()
    with batch_res.get_client() as client, tempfile.TemporaryDirectory(prefix="bw-collect-") as tmp:
        work = Path(tmp)
        attempt_results: list[str] = []
        last_batches: dict[str, dict] = {}
        unexpected = duplicates = 0
        unexpected_sample: list[str] = []
        i = 0
        while True:
            sub = attempts[i]
            n = sub.attempt
            latest = i == len(attempts) - 1
            adir = _attempt_dir(folder, key, n)
            local = work / f"attempt-{n}"
            local.mkdir(parents=True, exist_ok=True)
            parquet_key = f"{adir}/results.parquet"
            local_parquet = local / "results.parquet"
            collected = store.exists(parquet_key)  # by an earlier run of this asset
            batches: dict[str, dict] = {}
            if latest or not collected:
                batches = lc.snapshot(client, sub.batch_ids)
                if not all(lc.is_terminal(b) for b in batches.values()):
                    if not batch_res.is_blocking:
                        p = lc.progress(batches.values())
                        context.log.info(
                            f"attempt {n}: batches still running ({p['statuses']}, "
                            f"{p['completed']}/{p['total']} done); the sensor will request this "
                            "run again when they are terminal")
                        return None
                    batches = _wait_cancelling_on_interrupt(context, client, batch_res, sub)
                last_batches = batches
            request_files = [
                store.get_file(b.input_path, local / "requests" / f"shard-{b.shard:05d}.jsonl")
                for b in sub.batches]
            if collected:
                store.get_file(parquet_key, local_parquet)
                figures = _join_figures(store, adir)
            else:
                result = lc.collect(client, sub, batches, request_files, local)
                for raw in result.output_files + result.error_files:
                    store.put_file(raw, f"{adir}/raw/{Path(raw).name}")
                figures = {"unexpected": result.unexpected, "duplicates": result.duplicates,
                           "unexpected_sample": result.unexpected_sample}
                store.write_bytes(f"{adir}/join.json", orjson.dumps(figures))
                store.put_file(result.path, parquet_key)
                context.log.info(f"attempt {n}: {result.counts}")
                if result.unexpected or result.duplicates:
                    context.log.warning(
                        f"attempt {n}: {result.unexpected} result line(s) with a custom_id that "
                        f"was never submitted, {result.duplicates} duplicate line(s)")
            unexpected += int(figures.get("unexpected") or 0)
            duplicates += int(figures.get("duplicates") or 0)
            unexpected_sample += figures.get("unexpected_sample", [])[:SAMPLE_ROWS]
            attempt_results.append(str(local_parquet))
            if not latest:  # its resubmission exists already: go on with it
                i += 1
                continue
            done = ResultSet.from_parquet(local_parquet)
            unfinished = done.total - done.counts.get(SUCCEEDED, 0)
            cancelled = [b["id"] for b in batches.values() if b.get("status") == "cancelled"]
            if not unfinished or n >= batch_res.max_attempts:
                break
            if cancelled:
                context.log.warning(f"attempt {n}: batches were cancelled ({cancelled[:5]}); "
                                    "their unfinished requests are not resubmitted")
                break
            attempts.append(_resubmit(context, client, batch_res, store, profile, pointer, name,
                                      pkey, sub, request_files, local_parquet, work, unfinished))
            i += 1

        final_local = work / "results.parquet"
        lc.merge_attempts(attempt_results, final_local)
        summary = lc.summarize(final_local, attempt_results, _price_table(context, batch_res),
                               unexpected=unexpected, duplicates=duplicates)
        return _publish(store, name, pkey, pointer, attempts, last_batches, summary, final_local,
                        unexpected_sample[:SAMPLE_ROWS])


def _resubmit(context: AssetExecutionContext, client: Any, batch_res: BatchResource,
              store: ArtifactStore, profile: Any, pointer: Mapping[str, Any], name: str,
              pkey: str | None, sub: lc.SubmissionManifest, request_files: Sequence[Path],
              results_path: Path, work: Path, unfinished: int) -> lc.SubmissionManifest:
    """Submit exactly the unfinished requests of attempt `sub` as the next attempt.

    The budget is checked before anything is stored or submitted (BudgetExceededError then).
    """
    n, key = sub.attempt, pointer["key"]
    folder = partition_dir(name, pkey)
    context.log.info(f"attempt {n}: resubmitting {unfinished} unfinished request(s)")
    shards = lc.write_retry_shards(request_files, results_path, work / f"attempt-{n + 1}" / "requests",
                                   profile, endpoint=pointer["endpoint"],
                                   max_requests_per_file=batch_res.max_requests_per_file,
                                   max_bytes_per_file=batch_res.max_bytes_per_file)
    paths = [s.path for s in shards.shards]
    try:
        batch_res.check_budget(paths)
    except BudgetExceededError as exc:
        raise BudgetExceededError(
            f"resubmission of {unfinished} unfinished request(s) as attempt {n + 1}: {exc}"
        ) from None
    next_dir = _attempt_dir(folder, key, n + 1)
    shard_keys = []
    for shard in shards.shards:
        shard_key = f"{next_dir}/requests/{Path(shard.path).name}"
        store.put_file(shard.path, shard_key)
        shard_keys.append(shard_key)
    retry = lc.submit(
        client, paths, key, asset=name, partition=pkey,
        endpoint=pointer["endpoint"], model=pointer.get("model"), attempt=n + 1,
        completion_window=batch_res.completion_window,
        request_counts=[s.lines for s in shards.shards],
        max_in_flight=profile.max_batches_in_flight,
        poll_interval=batch_res.poll_interval_seconds,
        capacity_timeout=batch_res.wait_timeout,
        created_after=sub.created_at - lc.CLOCK_SLACK,  # resubmissions come after `sub`
    )
    for sb, shard_key in zip(retry.batches, shard_keys, strict=True):
        sb.input_path = shard_key
    store.write_bytes(f"{next_dir}/submission.json", retry.to_json())
    return retry


def _unfinished_sample(path: Path, limit: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first `limit` rows that did not succeed (reads row groups until it has them)."""
    import pyarrow.compute as pc

    rows: list[dict[str, Any]] = []
    columns = ["custom_id", "status", "error_code", "error_message"]
    for batch in open_parquet(path).iter_batches(columns=columns, batch_size=8192):
        keep = batch.filter(pc.not_equal(batch.column("status"), SUCCEEDED))
        rows.extend(keep.slice(0, limit - len(rows)).to_pylist())
        if len(rows) >= limit:
            break
    return rows


def _publish(store: ArtifactStore, name: str, pkey: str | None, pointer: Mapping[str, Any],
             attempts: list[lc.SubmissionManifest], last_batches: Mapping[str, dict],
             summary: lc.Summary, final_local: Path,
             unexpected_sample: Sequence[str] = ()) -> dict[str, Any]:
    """Store the final Parquet and summary; return the results asset's metadata."""
    folder = partition_dir(name, pkey)
    uri = store.put_file(final_local, results_key(name, pkey))
    sample = _unfinished_sample(final_local) if summary.unfinished else []
    finished = lc.finished_at(last_batches.values())
    elapsed = round(finished - attempts[0].created_at, 3) if finished else None
    record = {
        "submission_key": pointer["key"],
        "submitted": int(pointer["total_requests"]),
        "rows": summary.total,
        "unexpected": summary.unexpected,
        "duplicates": summary.duplicates,
        "unexpected_sample": list(unexpected_sample),
        "counts": summary.counts,
        "error_breakdown": summary.error_breakdown,
        "unfinished": summary.unfinished,
        "error_rate": summary.error_rate,
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "total_tokens": summary.total_tokens,
        "cost_usd": str(summary.cost_usd) if summary.cost_usd is not None else None,
        "attempts": len(attempts),
        "batch_ids": [bid for a in attempts for bid in a.batch_ids],
        "time_to_complete_seconds": elapsed,
    }
    store.write_bytes(f"{folder}/summary.json", orjson.dumps(record, option=orjson.OPT_INDENT_2))
    metadata: dict[str, Any] = {
        "path": MetadataValue.path(uri),
        "submission_key": pointer["key"],
        "rows": summary.total,
        "error_rate": summary.error_rate,
        "attempts": len(attempts),
        "error_breakdown": MetadataValue.json(summary.error_breakdown),
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "total_tokens": summary.total_tokens,
        "unexpected": summary.unexpected,
        "duplicates": summary.duplicates,
    }
    for status in ("succeeded", "failed", "errored", "missing"):
        metadata[status] = summary.counts.get(status, 0)
    if summary.cost_usd is not None:
        metadata["cost_usd_batch_rate"] = float(summary.cost_usd)
    if elapsed is not None:
        metadata["time_to_complete_seconds"] = elapsed
    if sample:
        rows = "\n".join(
            f"| {r['custom_id']} | {r['status']} | {r['error_code'] or ''} | "
            f"{(r['error_message'] or '')[:80].replace('|', '/')} |" for r in sample)
        metadata["unfinished_sample"] = MetadataValue.md(
            "| custom_id | status | error | message |\n|---|---|---|---|\n" + rows)
    return metadata


def _price_table(context: AssetExecutionContext, batch_res: BatchResource) -> Any:
    try:
        return batch_res.price_table()
    except (ConfigurationError, OSError, ImportError) as exc:
        context.log.warning(f"no price table ({exc}); cost left out")
        return None


def _wait_cancelling_on_interrupt(context: AssetExecutionContext, client: Any,
                                  batch_res: BatchResource,
                                  sub: lc.SubmissionManifest) -> dict[str, dict]:
    """Wait inside the run; a terminated run cancels its provider batches on the way out."""
    last: dict[str, Any] = {}

    def report(batches: dict[str, dict]) -> None:
        p = lc.progress(batches.values())
        line = (p["statuses"], p["completed"], p["failed"])
        if line != last.get("line"):
            last["line"] = line
            context.log.info(f"attempt {sub.attempt}: {p['statuses']} "
                             f"{p['completed']}/{p['total']} completed, {p['failed']} failed")

    try:
        return lc.wait(client, sub.batch_ids, poll_interval=batch_res.poll_interval_seconds,
                       timeout=batch_res.wait_timeout, on_progress=report)
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        context.log.warning(f"run terminated: cancelling {len(sub.batch_ids)} batch(es)")
        lc.cancel(client, sub.batch_ids)
        raise


# -- tracking (the body of the sensor; plain data in and out) ------------------------------------

@dataclass
class Tick:
    """What one sensor evaluation found."""

    cursor: str
    observations: list[tuple[str | None, dict[str, Any]]]
    ready: list[tuple[str | None, str]]  # (partition, "key16:attempt") whose batches are terminal
    in_flight: int
    scanned: int

    def describe(self) -> str:
        return f"{self.in_flight} batch(es) in flight; nothing new (scanned {self.scanned})"


def track_batches(client: Any, name: str, cursor: str | None, *,
                  horizon_seconds: float = 86400.0, now: float | None = None) -> Tick:
    """One tracking pass over the provider's list (newest first), from the cursor's watermark.

    The cursor holds ``since`` (the oldest creation time still of interest), the last reported
    progress per partition and the submission/attempt already handed to a results run.
    """
    state = json.loads(cursor) if cursor else {}
    since = state.get("since")
    seen: dict[str, str] = state.get("seen", {})
    requested: dict[str, str] = state.get("requested", {})
    now = time.time() if now is None else now
    floor = now - horizon_seconds - 3600  # older batches are terminal by definition
    created_after = max(since, floor) if since is not None else floor

    # partition -> key -> attempt -> batches
    groups: dict[str, dict[str, dict[int, list[dict]]]] = {}
    scanned = 0
    newest = None
    for batch in lc.iter_lifecycle_batches(client, asset=name, created_after=created_after):
        scanned += 1
        meta = batch.get("metadata") or {}
        created = batch.get("created_at") or 0
        newest = created if newest is None else max(newest, created)
        try:
            attempt = int(meta.get(lc.META_ATTEMPT, "1"))
        except ValueError:
            continue
        part = meta.get(lc.META_PARTITION, "")
        groups.setdefault(part, {}).setdefault(meta[lc.META_KEY], {}).setdefault(attempt, []).append(batch)

    observations: list[tuple[str | None, dict[str, Any]]] = []
    ready: list[tuple[str | None, str]] = []
    pending_since: list[float] = []
    in_flight = 0
    for part, keys in groups.items():
        # The current submission is the one created last; within it, the last attempt.
        key = max(keys, key=lambda k: max(b.get("created_at") or 0 for a in keys[k].values() for b in a))
        attempt = max(keys[key])
        batches = keys[key][attempt]
        expected = max(int((b.get("metadata") or {}).get(lc.META_SHARDS, "1")) for b in batches)
        p = lc.progress(batches)
        in_flight += sum(1 for b in batches if not lc.is_terminal(b))
        marker = f"{key[:16]}:{attempt}"
        digest = f"{marker}:{sorted(p['statuses'].items())}:{p['completed']}:{p['failed']}"
        partition = part or None
        if seen.get(part) != digest:
            seen[part] = digest
            observations.append((partition, {
                "submission_key": key, "attempt": attempt, "batches": len(batches),
                "statuses": MetadataValue.json(p["statuses"]), "total": p["total"],
                "completed": p["completed"], "failed": p["failed"],
                "terminal": p["terminal"]}))
        done = p["terminal"] and len(batches) >= expected
        if done and requested.get(part) != marker:
            requested[part] = marker
            ready.append((partition, marker))
        if not done:  # keep every batch of this submission in the next scans
            pending_since.extend(b.get("created_at") or 0 for a in keys[key].values() for b in a)

    if pending_since:
        new_since = min(pending_since)
    elif newest is not None:
        new_since = newest
    else:
        new_since = since
    # Partitions older than the new watermark will not be scanned again: forget them.
    visible = set(groups)
    state = {
        "since": new_since,
        "seen": {p: d for p, d in seen.items() if p in visible},
        "requested": {p: m for p, m in requested.items() if p in visible},
    }
    return Tick(json.dumps(state, separators=(",", ":")), observations, ready, in_flight, scanned)
