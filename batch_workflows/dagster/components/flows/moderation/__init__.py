from batch_workflows.dagster.components.flows.moderation.component import ModerationComponent

__all__ = ["ModerationComponent"]
