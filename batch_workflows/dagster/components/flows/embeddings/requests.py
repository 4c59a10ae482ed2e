"""The embeddings flow's request builder (moved from the repository's assets/embeddings).

It reads the partition's documents, chunks them in the model's tokens and packs many chunks
into each request; beside the shards it stores the chunk table (``<flow>/<partition>/
chunks.parquet``: which chunk is which input of which request).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.embeddings.chunking import chunk_documents, load_tokenizer
from batch_workflows.flows.embeddings.documents import documents_for_key
from batch_workflows.flows.embeddings.requests import ChunkTableWriter, build_requests
from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
from batch_workflows.profiles import ProviderProfile
from batch_workflows.s3 import s3_client_for


def inputs_cap(profile: ProviderProfile, inputs_per_request: int) -> int | None:
    """The provider's cap on embedding inputs per batch, when one shard file could reach it.

    The shard writer splits files on requests and bytes, not on embedding inputs: a partition
    over the cap must stop before anything is submitted."""
    limit = profile.max_embedding_inputs_per_batch
    if limit and profile.max_requests_per_file * inputs_per_request <= limit:
        return None  # no shard can reach the cap
    return limit


def embedding_requests(context: AssetExecutionContext, s: EmbeddingsSettings, batch: Any,
                       store: Any, chunks_key: str) -> Iterator[dict[str, Any]]:
    """The requests of one source shard; stores the chunk table under `chunks_key` once all
    are built."""
    pkey = context.partition_key
    profile = batch.get_profile()
    limit = inputs_cap(profile, s.inputs_per_request)
    docs = documents_for_key(
        pkey, s.watch_uri, id_field=s.id_field, text_field=s.text_field,
        text_unit=s.text_unit, s3_client=s3_client_for(s.watch_uri),
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
        store.put_file(table.path, chunks_key)
        context.log.info(
            f"{pkey}: {table.documents} documents → {table.chunks} chunks "
            f"({table.tokens:,} tokens, {tokenizer.name}, {s.chunk_tokens}/{s.chunk_overlap})"
        )
