"""QdrantResource: the vector store of the embeddings flow.

Local mode at a folder by default (`QDRANT_PATH`, default `.data/qdrant`); a server or cluster
with `QDRANT_URL` (+ `QDRANT_API_KEY`, resolved by Dagster as an EnvVar so its value never
shows in the UI or logs). Local mode locks its folder to one client, so `open()` holds the
client only for the `with` block: a step opens, writes, closes, and `batch-workflows search`
or the next run can open it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from batch_workflows.flows.embeddings.vectors import (
    API_KEY_VAR,
    DEFAULT_COLLECTION,
    DEFAULT_PATH,
    QdrantSettings,
    VectorIndex,
    open_client,
)


class QdrantResource(ConfigurableResource):
    """A Qdrant collection: local folder (`path`) unless `url` is set."""

    path: str = Field(default=DEFAULT_PATH, description="Local-mode folder (used when url is unset).")
    url: str | None = Field(default=None, description="Qdrant server URL, e.g. http://localhost:6333.")
    api_key: str | None = Field(default=None, description="Use EnvVar('QDRANT_API_KEY').")
    collection: str = Field(default=DEFAULT_COLLECTION, description="Collection name.")
    upsert_batch_size: int = Field(default=256, description="Points per upsert call.")
    timeout: int = Field(default=60, description="Server request timeout, seconds.")

    @classmethod
    def from_env(cls) -> QdrantResource:
        """The environment as `batch-workflows search` reads it (`QdrantSettings.from_env`),
        with the key kept as ``EnvVar("QDRANT_API_KEY")``: Dagster resolves it at run time and
        never shows its value."""
        env = QdrantSettings.from_env()
        return cls(
            path=env.path,
            url=env.url,
            api_key=EnvVar(API_KEY_VAR) if env.api_key else None,
            collection=env.collection,
        )

    def settings(self) -> QdrantSettings:
        return QdrantSettings(
            path=self.path,
            url=self.url,
            api_key=self.api_key,
            collection=self.collection,
            timeout=self.timeout,
        )

    def describe(self) -> str:
        """Where the collection lives (for metadata; never the key)."""
        return self.settings().describe()

    @contextmanager
    def open(self) -> Iterator[VectorIndex]:
        """The collection on a client held for the block only (frees the local-mode lock)."""
        with open_client(self.settings()) as client:
            yield VectorIndex(client, self.collection)
