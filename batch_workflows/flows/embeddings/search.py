"""`batch-workflows search "QUERY" [--limit N] [--json]`: semantic search over the collection.

Reads the same settings as the code location: QDRANT_URL / QDRANT_API_KEY / QDRANT_PATH /
QDRANT_COLLECTION. The query is embedded with the model recorded in the collection's points
(payload `model`), in-process when the local engine serves that model from disk, otherwise
through the provider's real-time /v1/embeddings: BATCH_BASE_URL, else the base URL of
BATCH_PROVIDER's profile (`profiles.resolve_base_url`, the rule `cancel` and the batch resource
use; see batch_workflows.flows.embeddings.query).

Hits are documents: the best chunk of each of the N nearest documents, so N hits name N distinct
documents; `--chunks` lists the N nearest chunks instead (several may come from one document).
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

SNIPPET = 160


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="semantic search over the embeddings collection",
        description="Embed QUERY with the collection's model and print the nearest documents "
        "(the best chunk of each).",
    )
    p.add_argument("query", help="the text to search for")
    p.add_argument("--limit", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.add_argument(
        "--chunks",
        action="store_true",
        help="list the nearest chunks, several per document if so (default: one hit per document)",
    )
    p.add_argument(
        "--collection", default=None, help="collection (default $QDRANT_COLLECTION or 'documents')"
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="embed the query through this OpenAI-compatible /v1 (default: in-process for the "
        "local model, else $BATCH_BASE_URL or $BATCH_PROVIDER's base URL)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from batch_workflows.errors import ConfigurationError
    from batch_workflows.flows.embeddings.vectors import QdrantSettings

    if args.limit < 1:
        raise ConfigurationError("--limit must be at least 1")
    settings = QdrantSettings.from_env()
    if args.collection:
        settings = replace(settings, collection=args.collection)
    hits = search(
        args.query, args.limit, settings, base_url=args.base_url, per_document=not args.chunks
    )
    if hits is None:
        print(f"no points in {settings.describe()}: run `make demo` or materialize "
              "the embeddings flow first", file=sys.stderr)
        return 1
    for rank, hit in enumerate(hits, start=1):
        if args.json:
            row = {k: hit.get(k) for k in ("score", "document_id", "chunk_index", "text")}
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        else:
            print(format_hit(rank, hit))
    return 0


def format_hit(rank: int, hit: dict) -> str:
    """Two lines: rank, score, document id and chunk index; then a one-line snippet."""
    snippet = " ".join(str(hit.get("text", "")).split())
    if len(snippet) > SNIPPET:
        snippet = snippet[: SNIPPET - 1] + "…"
    return (f"{rank:>2}. {hit['score']:.3f}  {hit.get('document_id')} #{hit.get('chunk_index')}\n"
            f"    {snippet}")


def search(
    query: str,
    limit: int,
    settings: object,
    base_url: str | None = None,
    api_key: str | None = None,
    per_document: bool = True,
) -> list[dict] | None:
    """Top `limit` hits for `query` (None when the collection is empty or missing): the best
    chunk of each of the nearest documents, or with `per_document=False` the nearest chunks.

    The query is embedded with the model recorded in the collection: in-process when the local
    engine serves it from disk, else through `base_url` (default: BATCH_BASE_URL, else the base
    URL of BATCH_PROVIDER's profile)."""
    from batch_workflows.flows.embeddings.query import QueryEmbedder
    from batch_workflows.flows.embeddings.vectors import VectorIndex, open_client

    with open_client(settings) as client:
        index = VectorIndex(client, settings.collection)
        if not index.count():
            return None
        model = _collection_model(client, settings.collection)
        base_url = query_base_url(model, base_url)
        key = api_key if api_key is not None else os.environ.get("BATCH_API_KEY")
        embedder = QueryEmbedder(model, base_url, key)
        try:
            vector = embedder.embed([query])[0]
        finally:
            embedder.close()
        if per_document:
            return index.search_documents(vector, limit)
        return index.search(vector, limit)


def query_base_url(model: str, base_url: str | None = None) -> str | None:
    """Where the query is embedded: `base_url` if given; None (in-process) for a model the
    local engine serves from disk; else BATCH_BASE_URL, else BATCH_PROVIDER's profile URL."""
    from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL_IDS, resolve_base_url

    if base_url is not None:
        return base_url
    if model in DEFAULT_EMBEDDING_MODEL_IDS:
        return None
    return resolve_base_url()


def _collection_model(client: object, collection: str) -> str:
    """The model recorded on the collection's points; EMBEDDING_MODEL when none is recorded."""
    from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL

    records, _ = client.scroll(collection, limit=1, with_payload=["model"], with_vectors=False)
    recorded = (records[0].payload or {}).get("model") if records else None
    return recorded or os.environ.get("EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL
