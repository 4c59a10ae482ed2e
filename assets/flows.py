"""The code location's flows as loaded from their YAML (``assets/defs/<flow>/defs.yaml``), for
the demo, partition registration and tests: ``load_flow("embeddings")`` reads the environment
now, as the code location does when it loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster.components.core.component_tree import ComponentTree

from batch_workflows.dagster.components.flows.base import FlowComponent

PROJECT = Path(__file__).resolve().parent.parent
FLOWS: tuple[str, ...] = ("embeddings", "distillation", "moderation")  # assets/defs/<name>


def component_tree(project: Path = PROJECT) -> ComponentTree:
    return ComponentTree.for_project(project)


def load_component(name: str, project: Path = PROJECT) -> Any:
    """The component declared in ``assets/defs/<name>/defs.yaml``, templates resolved now."""
    return component_tree(project).load_component(name)


def load_flow(name: str) -> Any:
    """The built flow (lifecycle, output asset, checks, sensors) of ``assets/defs/<name>``."""
    return load_component(name).flow()


def flow_components(tree: ComponentTree | None = None) -> list[FlowComponent]:
    """Every component of the defs folder that declares dynamic partitions (a user's too)."""
    tree = tree or component_tree()
    return [c for c in tree.get_all_components(of_type=object)
            if callable(getattr(c, "dynamic_partitions", None))]
