"""The embeddings flow: documents → chunks → /v1/embeddings batches → a Qdrant collection.

Assets (partitioned by source shard, `DynamicPartitionsDefinition("embeddings_sources")`):

* ``embeddings_requests`` / ``embeddings_batch`` / ``embeddings_results`` — the lifecycle
  factory's assets. The requests builder reads the partition's documents, chunks them in the
  model's tokens and packs many chunks into each request; beside the shards it stores the chunk
  table (``embeddings/<p>/chunks.parquet``: which chunk is which input of which request);
* ``embeddings_index`` — upserts the results into Qdrant (ids from document id and chunk index,
  so a re-run overwrites), deletes the partition's stale points; checks
  ``points_match_chunks`` and ``chunks_retrieve_themselves``.

Partition keys: ``pydoc-1-of-2``, ... for the shipped corpus (registered when this module loads
with a real instance, see `register_corpus_partitions`, and by the inbox sensor), otherwise a file's path relative to the watched folder or
S3 prefix (``EMBEDDINGS_WATCH_URI``, default ``.data/inbox``), added by ``embeddings_inbox_sensor``
when the file appears (and re-run when it changes).
"""


import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    asset_check,
    sensor,
)

from assets.lifecycle import batch_lifecycle, fetch_results, partition_dir
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.corpus import pydoc_shard_keys
from batch_workflows.flows.embeddings.chunking import chunk_documents, load_tokenizer
from batch_workflows.flows.embeddings.documents import DOCUMENT_SUFFIXES, documents_for_key
from batch_workflows.flows.embeddings.index import index_results
from batch_workflows.flows.embeddings.requests import (
    ChunkTableWriter,
    build_requests,
    chunk_rows,
    embedded_texts,
)
from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
from batch_workflows.flows.side_table import sample_rows, tally_results, tally_side_table
from batch_workflows.flows.sources import list_source_files
from batch_workflows.parquet import open_parquet
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.s3 import is_s3, make_s3_client
from resources.artifacts import ArtifactStore
from resources.batch import BatchResource
from resources.vectors import QdrantResource

NAME = "embeddings"
logger = logging.getLogger(__name__)


def settings() -> EmbeddingsSettings:
    """The flow's settings, read from the environment at each use (see EmbeddingsSettings)."""
    return EmbeddingsSettings.from_env()

embeddings_partitions = DynamicPartitionsDefinition(name="embeddings_sources")
CHECK_POINTS = "points_match_chunks"
CHECK_SELF = "chunks_retrieve_themselves"


def chunks_key(partition_key: str) -> str:
    """Artifact key of a partition's chunk table."""
    return f"{partition_dir(NAME, partition_key)}/chunks.parquet"


def index_summary_key(partition_key: str) -> str:
    return f"{partition_dir(NAME, partition_key)}/index.json"


def _s3_client(uri: str) -> Any:
    return make_s3_client() if is_s3(uri) else None


# ---- requests: documents → chunks → many chunks per /v1/embeddings request ---------------------


def build_embedding_requests(context: AssetExecutionContext) -> Iterator[dict[str, Any]]:
    """The requests of one source shard; stores the chunk table once all are built."""
    s = settings()
    pkey = context.partition_key
    batch: BatchResource = context.resources.batch
    store: ArtifactStore = context.resources.artifacts
    profile = batch.get_profile()
    # The shard writer splits files on requests and bytes, not on embedding inputs: when one
    # file could exceed the provider's inputs-per-batch cap, stop before submitting.
    limit = profile.max_embedding_inputs_per_batch
    if limit and profile.max_requests_per_file * s.inputs_per_request <= limit:
        limit = None  # no shard can reach the cap
    docs = documents_for_key(
        pkey, s.watch_uri, id_field=s.id_field, text_field=s.text_field,
        text_unit=s.text_unit, s3_client=_s3_client(s.watch_uri),
    )
    tokenizer = load_tokenizer(s.tokenizer)
    chunks = chunk_documents(docs, tokenizer, s.chunk_tokens, s.chunk_overlap)
    with tempfile.TemporaryDirectory(prefix="bw-chunks-") as tmp:
        table = ChunkTableWriter(Path(tmp) / "chunks.parquet", pkey)
        try:
            for request in build_requests(
                chunks, s.model, table, s.inputs_per_request, s.tokens_per_request
            ):
                if limit and table.chunks > limit:
                    raise ConfigurationError(
                        f"{pkey}: more than {limit:,} chunks, the {profile.name} cap on embedding "
                        "inputs per batch; split the source into smaller files or set the batch "
                        f"resource's max_requests_per_file ≤ {limit // s.inputs_per_request:,}"
                    )
                yield request
        finally:
            table.close()
        store.put_file(table.path, chunks_key(pkey))
        context.log.info(
            f"{pkey}: {table.documents} documents → {table.chunks} chunks "
            f"({table.tokens:,} tokens, {tokenizer.name}, {s.chunk_tokens}/{s.chunk_overlap})"
        )


lifecycle = batch_lifecycle(
    NAME,
    embeddings_partitions,
    EMBEDDINGS,
    build_embedding_requests,
    group_name=NAME,
)


# ---- index: results → Qdrant -----------------------------------------------------------------


@asset(
    name="embeddings_index",
    partitions_def=embeddings_partitions,
    deps=[lifecycle.results],
    group_name=NAME,
    kinds={"qdrant"},
    automation_condition=AutomationCondition.eager(),
    description="Points in Qdrant for the partition's chunks (re-runs overwrite; stale deleted).",
)
def embeddings_index(
    context: AssetExecutionContext, artifacts: ArtifactStore, qdrant: QdrantResource
) -> MaterializeResult:
    pkey = context.partition_key
    with tempfile.TemporaryDirectory(prefix="bw-index-") as tmp:
        results = fetch_results(artifacts, NAME, pkey, Path(tmp) / "results.parquet")
        chunks_path = artifacts.get_file(chunks_key(pkey), Path(tmp) / "chunks.parquet")
        # Streamed counts + fingerprints of the request ids: memory-flat, unlike id sets.
        planned, got = tally_side_table(chunks_path), tally_results(results)
        if not planned.same_requests(got):
            raise ConfigurationError(
                f"{pkey}: the chunk table and the results name different requests "
                f"({planned.requests} planned, {got.requests} with a result); "
                "re-materialize embeddings_requests through embeddings_results"
            )
        with qdrant.open() as index:
            report = index_results(
                index, chunks_path, results, pkey, _model(artifacts, pkey),
                batch_size=qdrant.upsert_batch_size,
            )
            points = index.count(pkey)
            total = index.count()
    summary = {**report.to_dict(), "points": points, "collection": qdrant.collection}
    artifacts.write_bytes(index_summary_key(pkey), orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    context.log.info(
        f"{pkey}: wrote {report.upserted} points ({report.unchanged} already identical), "
        f"deleted {report.stale_deleted} stale, "
        f"{report.failed_chunks} chunk(s) of failed requests; {points} points in the partition"
    )
    return MaterializeResult(
        metadata={
            "chunks": report.chunks,
            "points": points,
            "upserted": report.upserted,
            "unchanged": report.unchanged,
            "stale_deleted": report.stale_deleted,
            "failed_chunks": report.failed_chunks,
            "failed_requests_sample": MetadataValue.json(report.failed_sample),
            "dimension": report.dimension or 0,
            "collection_points": total,
            "collection": qdrant.describe(),
            "index_seconds": round(report.seconds, 3),
        }
    )


def _model(artifacts: ArtifactStore, pkey: str) -> str:
    """The model the partition's requests named (not today's setting, which may differ)."""
    pointer = json.loads(artifacts.read_bytes(f"{partition_dir(NAME, pkey)}/requests.json"))
    return pointer.get("model") or settings().model


def _summary(artifacts: ArtifactStore, pkey: str) -> dict[str, Any]:
    return json.loads(artifacts.read_bytes(index_summary_key(pkey)))


@asset_check(
    asset=embeddings_index,
    name=CHECK_POINTS,
    partitions_def=embeddings_partitions,
    description="Points in the collection for the partition == chunks planned, all embedded.",
)
def points_match_chunks(
    context: AssetCheckExecutionContext, artifacts: ArtifactStore, qdrant: QdrantResource
) -> AssetCheckResult:
    pkey = context.partition_key
    summary = _summary(artifacts, pkey)
    with qdrant.open() as index:
        points = index.count(pkey)
    embedded = summary["chunks"] - summary["failed_chunks"]
    return AssetCheckResult(
        passed=points == summary["chunks"] == embedded,
        metadata={"points": points, "chunks": summary["chunks"], "embedded": embedded},
    )


@asset_check(
    asset=embeddings_index,
    name=CHECK_SELF,
    partitions_def=embeddings_partitions,
    description="A sample of chunks, their own embedded text as the query, find themselves first.",
)
def chunks_retrieve_themselves(
    context: AssetCheckExecutionContext,
    artifacts: ArtifactStore,
    qdrant: QdrantResource,
    batch: BatchResource,
) -> AssetCheckResult:
    from batch_workflows.flows.embeddings.query import QueryEmbedder

    pkey = context.partition_key
    with tempfile.TemporaryDirectory(prefix="bw-check-") as tmp:
        path = artifacts.get_file(chunks_key(pkey), Path(tmp) / "chunks.parquet")
        rows = sample_rows(open_parquet(path).metadata.num_rows, settings().check_sample)
        sample = chunk_rows(path, rows)
    ids = sample.column("point_id").to_pylist()
    texts = sample.column("text").to_pylist()
    queries = embedded_texts(sample)  # the chunk under its title, as it was embedded
    # The provider's real-time endpoint: the same model, through the other path a query takes.
    if batch.provider == "local" and batch.start_local_engine:
        batch.ensure_local_engine()
    embedder = QueryEmbedder(_model(artifacts, pkey), batch.resolved_base_url, batch.api_key)
    vectors = embedder.embed(queries)
    misses = []
    with qdrant.open() as index:
        for pid, text, vec in zip(ids, texts, vectors, strict=True):
            top = index.search(vec, limit=1)
            # Identical texts in two chunks tie: either one is a correct first hit.
            if not top or (top[0]["id"] != pid and top[0].get("text") != text):
                misses.append({"expected": pid, "got": top[0]["id"] if top else None})
    return AssetCheckResult(
        passed=not misses,
        metadata={"sampled": len(rows), "misses": MetadataValue.json(misses)},
    )


# ---- the inbox sensor: a new file is a new partition ----------------------------------------


@sensor(
    name="embeddings_inbox_sensor",
    minimum_interval_seconds=30,
    asset_selection=[*lifecycle.assets, embeddings_index],
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition (and runs the flow) for each new or changed file under "
    "EMBEDDINGS_WATCH_URI; registers the shipped pydoc corpus partitions.",
)
def embeddings_inbox_sensor(context: SensorEvaluationContext) -> SensorResult:
    s = settings()
    files = list_source_files(s.watch_uri, suffixes=DOCUMENT_SUFFIXES,
                              s3_client=_s3_client(s.watch_uri))
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    new = missing_partitions(
        context.instance, corpus_partition_keys() + [f.name for f in files]
    )
    runs = [
        RunRequest(partition_key=f.name, run_key=f"{f.name}@{f.version}")
        for f in files
        if seen.get(f.name) != f.version
    ]
    cursor = json.dumps({f.name: f.version for f in files}, sort_keys=True)
    requests = [embeddings_partitions.build_add_request(new)] if new else []
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=cursor)


# ---- the shipped corpus's partitions exist wherever the code location loads ------------------


def corpus_partition_keys() -> list[str]:
    """Partition keys of the shipped pydoc corpus (``EMBEDDINGS_PYDOC_SHARDS`` shards)."""
    return pydoc_shard_keys(settings().pydoc_shards)


def missing_partitions(instance: DagsterInstance, keys: list[str]) -> list[str]:
    """`keys` the instance does not know yet as embeddings partitions, in order."""
    known = set(instance.get_dynamic_partitions(embeddings_partitions.name))
    return [k for k in dict.fromkeys(keys) if k not in known]


def register_corpus_partitions(instance: DagsterInstance | None = None) -> list[str]:
    """Add the shipped corpus's partitions the instance lacks; returns the keys added.

    Dagster's CLI cannot add dynamic partitions, so without this `dagster asset materialize
    ... --partition pydoc-1-of-2` fails on a fresh instance. Called when this module loads:
    with no `instance`, the one at DAGSTER_HOME (`DagsterInstance.get()`) and nothing at all
    when DAGSTER_HOME is unset (an ephemeral instance would forget them). Idempotent: reads
    first, adds only what is missing. Never raises: a failure must not break the code
    location's load, so it is logged as a warning instead.
    """
    try:
        if instance is None:
            if not os.environ.get("DAGSTER_HOME"):
                return []
            with DagsterInstance.get() as home:
                return register_corpus_partitions(home)
        missing = missing_partitions(instance, corpus_partition_keys())
        if missing:
            instance.add_dynamic_partitions(embeddings_partitions.name, missing)
        return missing
    except Exception as exc:  # any storage or settings problem: warn, keep loading
        logger.warning("could not register the shipped corpus partitions: %s", exc)
        return []


defs = Definitions(
    assets=[*lifecycle.assets, embeddings_index],
    asset_checks=[*lifecycle.checks, points_match_chunks, chunks_retrieve_themselves],
    sensors=[*lifecycle.sensors, embeddings_inbox_sensor],
)
"""The flow's definitions, without resources (the code location provides batch, artifacts
and qdrant)."""

register_corpus_partitions()
