"""``python -m assets.register_partitions``: add the dynamic partitions of every component of
the code location's defs folder (``assets/defs/``, a user's flows included) that the Dagster
instance at DAGSTER_HOME lacks, so that Dagster's own command line can materialize them.

Dagster 1.13's CLI cannot add dynamic partitions: ``dagster asset materialize --partition KEY``
refuses a key the instance does not know, and ``dagster instance`` has no command for them (an
open Dagster feature request, dagster-io/dagster#15499). On a fresh instance, run this first::

    export DAGSTER_HOME=$PWD/.data/dagster
    python -m assets.register_partitions
    dagster asset materialize -m assets.definitions --select ... --partition pydoc-1-of-2

A component takes part by having ``dynamic_partitions() -> {partitions name: keys}`` (the three
flows' components and ``BatchInferenceComponent`` with ``per_file`` partitions do).
Idempotent; a storage or settings error stops it with that error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from dagster import DagsterInstance

from assets.flows import label, partitioned_components
from batch_workflows.dagster import register_dynamic_partitions


@dataclass(frozen=True)
class Added:
    """The keys one component added to one of its partitions definitions."""

    component: str
    partitions: str
    keys: list[str]

    def line(self) -> str:
        listed = f": {', '.join(self.keys)}" if self.keys else ""
        return f"{self.component}: added {len(self.keys)} partition(s) to {self.partitions}{listed}"


def register_all(instance: DagsterInstance, components: Iterable | None = None) -> list[Added]:
    """Add what the instance lacks, for `components` (default: every one of the defs folder
    that has ``dynamic_partitions()``); one `Added` per component and partitions definition."""
    added = []
    for component in partitioned_components() if components is None else components:
        for name, keys in component.dynamic_partitions().items():
            added.append(Added(label(component), name,
                               register_dynamic_partitions(instance, {name: keys})))
    return added


def main() -> int:
    # DagsterInstance.get() refuses to run without DAGSTER_HOME: an ephemeral instance would
    # forget the partitions as soon as this process ends.
    with DagsterInstance.get() as instance:
        for added in register_all(instance):
            print(added.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
