"""The resources a flow binds once, by key: ``BatchResource`` (a Batch API and the lifecycle's
policies), ``ArtifactStore`` (shards, raw files and results under one base URI) and
``QdrantResource`` (the embeddings flow's vector store)."""

from batch_workflows.dagster.resources.artifacts import ArtifactStore
from batch_workflows.dagster.resources.batch import BatchResource, submission_pool
from batch_workflows.dagster.resources.vectors import QdrantResource

__all__ = ["ArtifactStore", "BatchResource", "QdrantResource", "submission_pool"]
