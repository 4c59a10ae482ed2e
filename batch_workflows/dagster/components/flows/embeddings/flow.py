"""The embeddings flow's definitions, from an `EmbeddingsComponent` (moved from the repository's
assets/embeddings): the lifecycle, ``<flow>_index`` (results → points in Qdrant) and its checks
``points_match_chunks`` and ``chunks_retrieve_themselves``, and the inbox sensor.

Points are keyed by document id and chunk index, so a re-run overwrites; the partition's stale
points are deleted. Partitions are dynamic: the shipped corpus's shards (``pydoc-1-of-2``, …)
and one per file under the watched folder or prefix.
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
    Definitions,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from batch_workflows.dagster.components.flows.embeddings.requests import embedding_requests
from batch_workflows.dagster.components.flows.file_partitions import FilePartitions
from batch_workflows.dagster.lifecycle.factory import batch_lifecycle
from batch_workflows.dagster.lifecycle.results import fetch_results
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.corpus import pydoc_shard_keys
from batch_workflows.flows.embeddings.documents import DOCUMENT_SUFFIXES
from batch_workflows.flows.embeddings.index import IndexReport, index_results
from batch_workflows.flows.embeddings.requests import chunk_rows, embedded_texts
from batch_workflows.flows.side_table import sample_rows, tally_results, tally_side_table
from batch_workflows.lifecycle import PartitionLayout, read_pointer
from batch_workflows.parquet import open_parquet
from batch_workflows.profiles import EMBEDDINGS

CHECK_POINTS = "points_match_chunks"
CHECK_SELF = "chunks_retrieve_themselves"


class EmbeddingsFlow(FilePartitions):
    """One embeddings flow: `lifecycle`, `index`, its checks, `inbox_sensor`, `partitions_def`;
    a partition per document file and per shard of the shipped corpus (`FilePartitions`)."""

    SUFFIXES = DOCUMENT_SUFFIXES

    def __init__(self, component: Any):
        self.c = component
        self.settings = component.settings()
        self.partitions_def = DynamicPartitionsDefinition(
            name=f"{component.definition_name}_sources")
        self.lifecycle = batch_lifecycle(
            component.name, self.partitions_def, EMBEDDINGS, self.build_requests,
            group_description=component.group_description, **component.lifecycle_options())
        spec = self.lifecycle.spec
        self.name = spec.name  # the artifact folder: <prefix>/<name>
        self.index = self._index_asset()
        self.points_match_chunks = self._points_check()
        self.chunks_retrieve_themselves = self._self_check()
        self.checks = [self.points_match_chunks, self.chunks_retrieve_themselves]
        self.inbox_sensor = self.file_inbox_sensor(component, self.index,
                                                   "the shipped pydoc corpus partitions")

    # -- partitions ------------------------------------------------------------------------------
    def shipped_partition_keys(self) -> list[str]:
        """Partition keys of the shipped pydoc corpus (`pydoc_shards` shards; 0: none)."""
        shards = self.settings.pydoc_shards
        return pydoc_shard_keys(shards) if shards else []

    # -- artifacts --------------------------------------------------------------------------------
    def chunks_key(self, partition_key: str) -> str:
        return PartitionLayout(self.name, partition_key).file("chunks.parquet")

    def index_summary_key(self, partition_key: str) -> str:
        return PartitionLayout(self.name, partition_key).file("index.json")

    def _model(self, artifacts: Any, pkey: str) -> str:
        """The model the partition's requests named (not today's setting, which may differ)."""
        return read_pointer(artifacts, self.name, pkey).model or self.settings.model

    # -- definitions ------------------------------------------------------------------------------
    def build_requests(self, context: AssetExecutionContext):
        """The hook a subclass overrides for its own requests (same chunk table contract)."""
        c = self.c
        yield from embedding_requests(
            context, self.settings, getattr(context.resources, c.batch_resource_key),
            getattr(context.resources, c.artifacts_resource_key),
            self.chunks_key(context.partition_key))

    def _resources(self, context: Any) -> tuple[Any, Any]:
        return (getattr(context.resources, self.c.artifacts_resource_key),
                getattr(context.resources, self.c.qdrant_resource_key))

    def _index_asset(self):
        flow, c = self, self.c

        @asset(
            **c.output_asset_options(self.lifecycle, "index"),
            kinds={"qdrant"},
            required_resource_keys={c.artifacts_resource_key, c.qdrant_resource_key},
            automation_condition=AutomationCondition.eager(),
            description="Points in Qdrant for the partition's chunks (re-runs overwrite; stale "
                        "deleted).",
        )
        def index(context: AssetExecutionContext) -> MaterializeResult:
            return flow.write_index(context)

        return index

    def write_index(self, context: AssetExecutionContext) -> MaterializeResult:
        """Upsert the partition's results into Qdrant (the sink a subclass may replace)."""
        artifacts, qdrant = self._resources(context)
        pkey = context.partition_key
        with tempfile.TemporaryDirectory(prefix="bw-index-") as tmp:
            results = fetch_results(artifacts, self.name, pkey, Path(tmp) / "results.parquet")
            chunks_path = artifacts.get_file(self.chunks_key(pkey), Path(tmp) / "chunks.parquet")
            # Streamed counts + fingerprints of the request ids: memory-flat, unlike id sets.
            planned, got = tally_side_table(chunks_path), tally_results(results)
            if not planned.same_requests(got):
                raise ConfigurationError(
                    f"{pkey}: the chunk table and the results name different requests "
                    f"({planned.requests} planned, {got.requests} with a result); "
                    f"re-materialize {self.lifecycle.spec.requests_name} through "
                    f"{self.lifecycle.spec.results_name}")
            with qdrant.open() as index:
                report = index_results(
                    index, chunks_path, results, pkey, self._model(artifacts, pkey),
                    batch_size=qdrant.upsert_batch_size,
                )
                points = index.count(pkey)
                total = index.count()
        summary = {**report.to_dict(), "points": points, "collection": qdrant.collection}
        artifacts.write_bytes(self.index_summary_key(pkey),
                              orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        context.log.info(
            f"{pkey}: wrote {report.upserted} points ({report.unchanged} already identical), "
            f"deleted {report.stale_deleted} stale, "
            f"{report.failed_chunks} chunk(s) of failed requests; {points} points in the partition"
        )
        return MaterializeResult(metadata=_index_metadata(report, points, total, qdrant))

    def _points_check(self):
        flow, c = self, self.c

        @asset_check(asset=self.index, name=CHECK_POINTS, partitions_def=self.partitions_def,
                     required_resource_keys={c.artifacts_resource_key, c.qdrant_resource_key},
                     description="Points in the collection for the partition == chunks planned, "
                                 "all embedded.")
        def points_match_chunks(context: AssetCheckExecutionContext) -> AssetCheckResult:
            artifacts, qdrant = flow._resources(context)
            pkey = context.partition_key
            summary = json.loads(artifacts.read_bytes(flow.index_summary_key(pkey)))
            with qdrant.open() as index:
                points = index.count(pkey)
            embedded = summary["chunks"] - summary["failed_chunks"]
            return AssetCheckResult(
                passed=points == summary["chunks"] == embedded,
                metadata={"points": points, "chunks": summary["chunks"], "embedded": embedded},
            )

        return points_match_chunks

    def _self_check(self):
        flow, c = self, self.c

        @asset_check(asset=self.index, name=CHECK_SELF, partitions_def=self.partitions_def,
                     required_resource_keys={c.artifacts_resource_key, c.qdrant_resource_key,
                                             c.batch_resource_key},
                     description="A sample of chunks, their own embedded text as the query, "
                                 "find themselves first.")
        def chunks_retrieve_themselves(context: AssetCheckExecutionContext) -> AssetCheckResult:
            return flow.retrieve_themselves(context)

        return chunks_retrieve_themselves

    def retrieve_themselves(self, context: AssetCheckExecutionContext) -> AssetCheckResult:
        from batch_workflows.flows.embeddings.query import QueryEmbedder

        artifacts, qdrant = self._resources(context)
        batch = getattr(context.resources, self.c.batch_resource_key)
        pkey = context.partition_key
        with tempfile.TemporaryDirectory(prefix="bw-check-") as tmp:
            path = artifacts.get_file(self.chunks_key(pkey), Path(tmp) / "chunks.parquet")
            rows = sample_rows(open_parquet(path).metadata.num_rows, self.settings.check_sample)
            sample = chunk_rows(path, rows)
        ids = sample.column("point_id").to_pylist()
        texts = sample.column("text").to_pylist()
        queries = embedded_texts(sample)  # the chunk under its title, as it was embedded
        # The provider's real-time endpoint: the same model, through the other path a query takes.
        if batch.provider == "local" and batch.start_local_engine:
            batch.ensure_local_engine()
        embedder = QueryEmbedder(self._model(artifacts, pkey), batch.resolved_base_url,
                                 batch.api_key)
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

    def definitions(self) -> Definitions:
        return Definitions(assets=[*self.lifecycle.assets, self.index],
                           asset_checks=[*self.lifecycle.checks, *self.checks],
                           sensors=[*self.lifecycle.sensors, self.inbox_sensor])


def _index_metadata(report: IndexReport, points: int, total: int, qdrant: Any) -> dict[str, Any]:
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
