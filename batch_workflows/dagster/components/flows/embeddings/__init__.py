from batch_workflows.dagster.components.flows.embeddings.component import EmbeddingsComponent

__all__ = ["EmbeddingsComponent"]
