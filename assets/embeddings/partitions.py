"""The embeddings flow's partitions: one per source shard, and the step that registers them.

Keys: ``pydoc-1-of-2``, ... for the shipped corpus (``EMBEDDINGS_PYDOC_SHARDS`` shards), and
otherwise a file's path relative to the watched folder or S3 prefix (``EMBEDDINGS_WATCH_URI``,
default ``.data/inbox/embeddings``).

The partitions are dynamic, and Dagster 1.13's command line cannot add dynamic partitions
(`dagster asset materialize --partition KEY` refuses a key the instance does not know, and
`dagster instance` has no command for them). The inbox sensor adds them on its ticks; anything
else registers them explicitly before materializing on a fresh instance: from Python,
``register_partitions(instance)``; from a shell, ``python -m assets.register_partitions`` (every
flow's, in the instance at DAGSTER_HOME). Both add only what is missing and let any storage or
settings error propagate.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, DynamicPartitionsDefinition

from batch_workflows.flows.corpus import pydoc_shard_keys
from batch_workflows.flows.embeddings.documents import DOCUMENT_SUFFIXES
from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
from batch_workflows.flows.inbox import unknown_keys
from batch_workflows.flows.sources import SourceFile, list_source_files
from batch_workflows.s3 import s3_client_for

NAME = "embeddings"  # the flow's name: its assets' prefix and its folder in the artifact store
# The asset group's description (in every asset's metadata: Dagster has no group descriptions)
# and who answers for the flow.
GROUP_DESCRIPTION = (
    "Semantic search index: documents (the shipped Python reference or inbox files) cut into "
    "token-measured chunks, embedded through /v1/embeddings batches and upserted into Qdrant; "
    "one partition per source shard or file."
)
OWNERS = ("team:ml-platform",)
embeddings_partitions = DynamicPartitionsDefinition(name="embeddings_sources")


def settings() -> EmbeddingsSettings:
    """The flow's settings, read from the environment at each use: a changed variable applies
    to the next run and the next sensor tick without reloading the code location."""
    return EmbeddingsSettings.from_env()


def corpus_partition_keys() -> list[str]:
    """Partition keys of the shipped pydoc corpus (``EMBEDDINGS_PYDOC_SHARDS`` shards)."""
    return pydoc_shard_keys(settings().pydoc_shards)


def inbox_files() -> list[SourceFile]:
    """The files under ``EMBEDDINGS_WATCH_URI`` that the flow reads, each a partition."""
    watch_uri = settings().watch_uri
    return list_source_files(watch_uri, suffixes=DOCUMENT_SUFFIXES,
                             s3_client=s3_client_for(watch_uri))


def partition_keys() -> list[str]:
    """Every partition the flow has now: the shipped corpus's, then one per inbox file."""
    return corpus_partition_keys() + [f.name for f in inbox_files()]


def missing_partitions(instance: DagsterInstance, keys: Sequence[str]) -> list[str]:
    """`keys` the instance does not know yet as embeddings partitions, in order."""
    return unknown_keys(keys, instance.get_dynamic_partitions(embeddings_partitions.name))


def register_partitions(instance: DagsterInstance, keys: Sequence[str] | None = None) -> list[str]:
    """Add the partitions among `keys` (default: `partition_keys()`) that the instance lacks;
    returns the keys added. Idempotent: reads first, adds only what is missing."""
    missing = missing_partitions(instance, partition_keys() if keys is None else keys)
    if missing:
        instance.add_dynamic_partitions(embeddings_partitions.name, missing)
    return missing
