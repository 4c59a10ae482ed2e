"""Qdrant as the vector store, without Dagster: settings, point ids, and the index operations
shared by the Dagster resource (`resources/vectors.py`) and `batch-workflows search`.

Local mode (a folder, the default `.data/qdrant`) locks the folder to one client at a time, so
every user opens the client for one step and closes it (`open_client` is a context manager).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from batch_workflows.errors import ConfigurationError, PartitionConflictError
from batch_workflows.extras import require

DEFAULT_PATH = ".data/qdrant"
DEFAULT_COLLECTION = "documents"
# Fixed namespace: the same (document id, chunk index) is the same point in every run.
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "batch-workflows/embeddings/point")
PAYLOAD_INDEXES = ("partition", "document_id")
API_KEY_VAR = "QDRANT_API_KEY"


def point_id(document_id: str, chunk_index: int) -> str:
    """Deterministic point id (uuid5) of one chunk: a re-run overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}\x1f{chunk_index}"))


def check_owners(stored: Iterable[Any], payloads_by_id: dict[str, dict[str, Any]]) -> None:
    """Raise PartitionConflictError when a stored point belongs to another partition than the
    payload about to replace it (records from `retrieve`, with at least `partition` payload)."""
    for record in stored:
        new = payloads_by_id.get(str(record.id))
        owner = (record.payload or {}).get("partition")
        if new is not None and owner is not None and owner != new.get("partition"):
            raise PartitionConflictError(
                str(new.get("document_id")), str(owner), str(new.get("partition"))
            )


@dataclass(frozen=True)
class QdrantSettings:
    """Where the collection lives: a server (`url`, optional `api_key`) or a local `path`."""

    path: str = DEFAULT_PATH
    url: str | None = None
    api_key: str | None = None
    collection: str = DEFAULT_COLLECTION
    timeout: int = 60

    @classmethod
    def from_env(cls) -> QdrantSettings:
        """QDRANT_URL, QDRANT_API_KEY, QDRANT_PATH, QDRANT_COLLECTION: the one reading of the
        Qdrant environment, by `batch-workflows search` and the code location's resource."""
        return cls(
            path=os.environ.get("QDRANT_PATH") or DEFAULT_PATH,
            url=os.environ.get("QDRANT_URL") or None,
            api_key=os.environ.get(API_KEY_VAR) or None,
            collection=os.environ.get("QDRANT_COLLECTION") or DEFAULT_COLLECTION,
        )

    def describe(self) -> str:
        """Where the collection is, for logs (never the key)."""
        where = self.url if self.url else f"local folder {os.path.abspath(self.path)}"
        return f"collection {self.collection!r} at {where}"


@contextmanager
def open_client(settings: QdrantSettings) -> Iterator[Any]:
    """A QdrantClient for the duration of the block, closed after (frees the local lock)."""
    require("qdrant", "the Qdrant vector store")
    from qdrant_client import QdrantClient

    if settings.url:
        client = QdrantClient(url=settings.url, api_key=settings.api_key, timeout=settings.timeout)
    else:
        os.makedirs(settings.path, exist_ok=True)
        try:
            client = QdrantClient(path=settings.path)
        except RuntimeError as exc:
            # portalocker's "already accessed by another instance": say what to do.
            raise ConfigurationError(
                f"Qdrant folder {settings.path} is in use by another process "
                "(local mode allows one client at a time; close it or use a Qdrant server "
                f"via QDRANT_URL): {exc}"
            ) from None
    try:
        yield client
    finally:
        client.close()


class VectorIndex:
    """One collection on an open client: create, upsert, count, prune, search."""

    def __init__(self, client: Any, collection: str):
        self.client = client
        self.collection = collection

    # -- collection ----------------------------------------------------------------------

    def dimension(self) -> int | None:
        """The collection's vector size, or None when it does not exist."""
        if not self.client.collection_exists(self.collection):
            return None
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, dict):  # named vectors: not ours
            raise ConfigurationError(
                f"Qdrant collection {self.collection!r} uses named vectors {sorted(vectors)}; "
                "expected a single unnamed vector"
            )
        return int(vectors.size)

    def ensure_collection(self, dimension: int) -> bool:
        """Create the collection (cosine) if missing; True when created. A collection of
        another dimension is a ConfigurationError, never silently recreated."""
        from qdrant_client import models

        existing = self.dimension()
        if existing is not None:
            if existing != dimension:
                raise ConfigurationError(
                    f"Qdrant collection {self.collection!r} holds {existing}-dimensional vectors "
                    f"but the embedding model produces {dimension}; use another collection "
                    "(QDRANT_COLLECTION) or delete this one"
                )
            return False
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        )
        if not self._local:
            for field in PAYLOAD_INDEXES:  # a server filters on these: index them
                self.client.create_payload_index(
                    self.collection, field, field_schema=models.PayloadSchemaType.KEYWORD
                )
        return True

    @property
    def _local(self) -> bool:
        return type(getattr(self.client, "_client", None)).__name__ == "QdrantLocal"

    # -- writes --------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]] | Any,
        payloads: Sequence[dict[str, Any]],
    ) -> int:
        """Upsert one batch of points (ids, vectors, payloads in the same order).

        A point that exists with another `partition` in its payload is never overwritten:
        PartitionConflictError (the same document id in two partitions)."""

        if not ids:
            return 0
        stored = self.client.retrieve(
            self.collection, ids=list(ids), with_payload=["partition"], with_vectors=False
        )
        check_owners(stored, dict(zip(ids, payloads, strict=True)))
        return self._write(ids, vectors, payloads)

    def _write(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]] | Any,
        payloads: Sequence[dict[str, Any]],
    ) -> int:
        from qdrant_client import models

        if hasattr(vectors, "tolist"):
            vectors = vectors.tolist()
        self.client.upsert(
            self.collection,
            points=models.Batch(ids=list(ids), vectors=list(vectors), payloads=list(payloads)),
            wait=True,
        )
        return len(ids)

    def upsert_changed(
        self,
        ids: Sequence[str],
        vectors: Any,
        payloads: Sequence[dict[str, Any]],
    ) -> tuple[int, int]:
        """Upsert only the points that are new or differ (payload or direction of the vector);
        returns (written, unchanged). A re-run over the same results writes nothing, which
        also spares local mode its one-commit-per-point cost. Like `upsert`, refuses to
        overwrite another partition's point (PartitionConflictError)."""
        import numpy as np

        if not ids:
            return 0, 0
        vectors = np.asarray(vectors, dtype=np.float32)
        stored = {
            str(r.id): r
            for r in self.client.retrieve(
                self.collection, ids=list(ids), with_payload=True, with_vectors=True
            )
        }
        check_owners(stored.values(), dict(zip(ids, payloads, strict=True)))
        unit = _unit(vectors)
        keep = []
        for i, pid in enumerate(ids):
            old = stored.get(pid)
            # Compare directions: cosine collections may hand back the vector normalized
            # (server, local in memory) or as sent (local mode after a reload).
            if (
                old is None
                or old.payload != payloads[i]
                or not np.allclose(_unit(np.asarray([old.vector]))[0], unit[i], atol=1e-5)
            ):
                keep.append(i)
        if keep:
            self._write([ids[i] for i in keep], vectors[keep], [payloads[i] for i in keep])
        return len(keep), len(ids) - len(keep)

    def partition_ids(self, partition: str, page: int = 10_000) -> Iterator[str]:
        """Ids of every point whose payload says it belongs to `partition` (streamed)."""
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                scroll_filter=_partition_filter(partition),
                limit=page,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            for record in records:
                yield str(record.id)
            if offset is None:
                return

    def delete_stale(self, partition: str, keep: Iterable[str] | Any, batch: int = 1024) -> int:
        """Delete the points of `partition` whose id is not in `keep` (an Arrow string array,
        e.g. the chunk table's point_id column, or any iterable of ids); returns how many.

        Membership is Arrow's hash lookup, one page of ids at a time, and pages are deleted as
        they go: no Python set of every id, no list of every stale id."""
        import pyarrow as pa

        if not isinstance(keep, pa.Array | pa.ChunkedArray):
            keep = pa.array(list(keep), pa.string())
        deleted = 0
        page: list[str] = []
        # Deleting while the scroll goes on is safe: its next offset is a point not yet returned.
        for pid in self.partition_ids(partition):
            page.append(pid)
            if len(page) >= batch:
                deleted += self.delete_unkept(page, keep)
                page = []
        return deleted + self.delete_unkept(page, keep)

    def delete_unkept(self, ids: Sequence[str], keep: Any) -> int:
        """Delete the points among `ids` whose id is not in `keep` (an Arrow string array);
        returns how many."""
        import pyarrow as pa
        import pyarrow.compute as pc
        from qdrant_client import models

        if not ids:
            return 0
        mask = pc.is_in(pa.array(ids, pa.string()), value_set=keep)
        stale = [pid for pid, kept in zip(ids, mask.to_pylist(), strict=True) if not kept]
        if stale:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=stale))
        return len(stale)

    # -- reads ---------------------------------------------------------------------------

    def count(self, partition: str | None = None) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        flt = _partition_filter(partition) if partition is not None else None
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def search(self, vector: Sequence[float], limit: int = 5) -> list[dict[str, Any]]:
        """Nearest points: dicts with score, document_id, chunk_index, text, source, partition."""
        if hasattr(vector, "tolist"):
            vector = vector.tolist()
        hits = self.client.query_points(
            self.collection, query=list(vector), limit=limit, with_payload=True
        ).points
        return [_hit(h) for h in hits]

    def search_documents(self, vector: Sequence[float], limit: int = 5) -> list[dict[str, Any]]:
        """The best chunk of each of the `limit` nearest documents (distinct document ids),
        best first: the same dicts as `search`. A long document no longer fills the top hits
        with its own chunks, so the hits name `limit` candidate documents."""
        if hasattr(vector, "tolist"):
            vector = vector.tolist()
        groups = self.client.query_points_groups(
            self.collection,
            group_by="document_id",
            query=list(vector),
            limit=limit,
            group_size=1,
            with_payload=True,
        ).groups
        hits = [_hit(g.hits[0]) for g in groups if g.hits]
        # Best first; equal scores (twin chunks) ordered by id so that output is deterministic.
        return sorted(hits, key=lambda h: (-h["score"], h["id"]))


def _hit(point: Any) -> dict[str, Any]:
    return {"score": float(point.score), "id": str(point.id), **(point.payload or {})}


def _unit(vectors: Any) -> Any:
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def _partition_filter(partition: str) -> Any:
    from qdrant_client import models

    return models.Filter(
        must=[models.FieldCondition(key="partition", match=models.MatchValue(value=partition))]
    )
