from batch_workflows.dagster.components.flows.distillation.component import DistillationComponent

__all__ = ["DistillationComponent"]
