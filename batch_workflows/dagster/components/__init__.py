"""Dagster Components of the integration (``dg list components`` shows them): a flow declared in
YAML, and the resources it needs, bound in YAML too."""

from batch_workflows.dagster.components.batch_inference import BatchInferenceComponent
from batch_workflows.dagster.components.flows.distillation import DistillationComponent
from batch_workflows.dagster.components.flows.embeddings import EmbeddingsComponent
from batch_workflows.dagster.components.flows.moderation import ModerationComponent
from batch_workflows.dagster.components.resources import (
    ArtifactStoreComponent,
    BatchResourceComponent,
)

__all__ = ["ArtifactStoreComponent", "BatchInferenceComponent", "BatchResourceComponent",
           "DistillationComponent", "EmbeddingsComponent", "ModerationComponent"]
