"""``embeddings_index``: the partition's results upserted into Qdrant, and its checks.

Points are keyed by document id and chunk index, so a re-run overwrites; the partition's stale
points are deleted. Checks: ``points_match_chunks`` (the collection holds exactly the chunks
planned, all embedded) and ``chunks_retrieve_themselves`` (a sample of chunks, queried with
their own embedded text through the real-time endpoint, find themselves first).
"""

# No `from __future__ import annotations` here: Dagster reads the context annotations of asset
# and check functions at definition time and refuses them as strings.
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.embeddings.partitions import (
    GROUP_DESCRIPTION,
    NAME,
    OWNERS,
    embeddings_partitions,
    settings,
)
from assets.embeddings.requests import chunks_key, lifecycle
from batch_workflows.dagster import (
    GROUP_DESCRIPTION_KEY,
    ArtifactStore,
    BatchResource,
    QdrantResource,
    fetch_results,
)
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.embeddings.index import IndexReport, index_results
from batch_workflows.flows.embeddings.requests import chunk_rows, embedded_texts
from batch_workflows.flows.side_table import sample_rows, tally_results, tally_side_table
from batch_workflows.lifecycle import PartitionLayout, read_pointer
from batch_workflows.parquet import open_parquet

CHECK_POINTS = "points_match_chunks"
CHECK_SELF = "chunks_retrieve_themselves"


def index_summary_key(partition_key: str) -> str:
    return PartitionLayout(NAME, partition_key).file("index.json")


@asset(
    name="embeddings_index",
    partitions_def=embeddings_partitions,
    deps=[lifecycle.results],
    group_name=NAME,
    owners=OWNERS,
    metadata={GROUP_DESCRIPTION_KEY: GROUP_DESCRIPTION},
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
    return MaterializeResult(metadata=_index_metadata(report, points, total, qdrant))


def _index_metadata(
    report: IndexReport, points: int, total: int, qdrant: QdrantResource
) -> dict[str, Any]:
    return {
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


def _model(artifacts: ArtifactStore, pkey: str) -> str:
    """The model the partition's requests named (not today's setting, which may differ)."""
    return read_pointer(artifacts, NAME, pkey).model or settings().model


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
