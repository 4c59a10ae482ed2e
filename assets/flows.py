"""The code location's flows as loaded from their YAML (``assets/defs/<flow>/defs.yaml``), for
the demo, partition registration and tests: ``load_flow("embeddings")`` reads the environment
now, as the code location does when it loads (each run's process loads it afresh)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster.components.core.component_tree import ComponentTree, ComponentTreeException

from batch_workflows.errors import ConfigurationError

PROJECT = Path(__file__).resolve().parent.parent
DEFS = PROJECT / "assets" / "defs"
# This repository's flows: one folder each under assets/defs/, named as the flow (its group).
FLOWS: tuple[str, ...] = tuple(sorted(p.parent.name for p in DEFS.glob("*/defs.yaml")))


@contextmanager
def settings_errors(where: str) -> Iterator[None]:
    """A bad setting surfaces as the ConfigurationError naming it (attribute, value, the
    ``{{ env.X }}`` it came from), not only as Dagster's tree of which component failed."""
    try:
        yield
    except ComponentTreeException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigurationError):
            raise ConfigurationError(f"{where}: {cause}") from e
        raise


def component_tree(project: Path = PROJECT) -> ComponentTree:
    return ComponentTree.for_project(project)


def load_component(name: str, project: Path = PROJECT) -> Any:
    """The component declared in ``assets/defs/<name>/defs.yaml``, templates resolved now."""
    with settings_errors(f"assets/defs/{name}/defs.yaml"):
        return component_tree(project).load_component(name)


def load_flow(name: str) -> Any:
    """The built flow (lifecycle, output asset, checks, sensors) of ``assets/defs/<name>``."""
    return load_component(name).flow()


def partitioned_components(tree: ComponentTree | None = None) -> list[Any]:
    """Every component of the defs folder that declares dynamic partitions (the flows', a
    user's, any component class with ``dynamic_partitions()``)."""
    tree = tree or component_tree()
    with settings_errors(str(tree.defs_module_path.relative_to(tree.project_root))):
        found = tree.get_all_components(of_type=object)
    # A defs.yaml with one document is listed twice (the file and its document 0), one object.
    unique = list({id(c): c for c in found}.values())
    return [c for c in unique if callable(getattr(c, "dynamic_partitions", None))]


def label(component: Any) -> str:
    """How a component is named in messages: its unique definition name (``embeddings``,
    ``search__catalog``), else its name, else its class."""
    return (getattr(component, "definition_name", None) or getattr(component, "name", None)
            or type(component).__name__)
