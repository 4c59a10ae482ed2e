"""QdrantResource: the vector store of the embeddings flow.

A server or cluster at `url` (its key as ``EnvVar("QDRANT_API_KEY")``, resolved by Dagster so
its value never shows in the UI or logs), or Qdrant's local mode in the folder `path` (the
``qdrant`` extra either way). One of the two must be set: nothing is written to the worker's
disk unless asked for. Local mode locks its folder to one client, so `open()` holds the
client only for the `with` block: a step opens, writes, closes, and `batch-workflows search`
or the next run can open it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource
from pydantic import Field

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.embeddings.vectors import (
    DEFAULT_COLLECTION,
    DEFAULT_PATH,
    QdrantSettings,
    VectorIndex,
    open_client,
)


class QdrantResource(ConfigurableResource):
    """A Qdrant collection on a server (`url`) or in a local-mode folder (`path`)."""

    path: str | None = Field(default=None, description="Local-mode folder (when url is unset).")
    url: str | None = Field(default=None, description="Qdrant server URL, e.g. http://localhost:6333.")
    api_key: str | None = Field(default=None, description="Use EnvVar('QDRANT_API_KEY').")
    collection: str = Field(default=DEFAULT_COLLECTION, description="Collection name.")
    upsert_batch_size: int = Field(default=256, description="Points per upsert call.")
    timeout: int = Field(default=60, description="Server request timeout, seconds.")

    def settings(self) -> QdrantSettings:
        if not self.url and not self.path:
            raise ConfigurationError("QdrantResource needs url (a Qdrant server) or path (a "
                                     "local-mode folder)")
        return QdrantSettings(
            path=self.path or DEFAULT_PATH,
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
