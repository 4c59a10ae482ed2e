"""``python -m assets.register_partitions``: add every flow's dynamic partitions that the Dagster
instance at DAGSTER_HOME lacks, so that Dagster's own command line can materialize them.

Dagster 1.13's CLI cannot add dynamic partitions: ``dagster asset materialize --partition KEY``
refuses a key the instance does not know, and ``dagster instance`` has no command for them (an
open Dagster feature request, dagster-io/dagster#15499). On a fresh instance, run this first::

    export DAGSTER_HOME=$PWD/.data/dagster
    python -m assets.register_partitions
    dagster asset materialize -m assets.definitions --select ... --partition pydoc-1-of-2

A flow takes part by exposing ``register_partitions(instance) -> list[str]`` (the keys it
added). Idempotent; a storage or settings error stops it with that error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from dagster import DagsterInstance


def register_all(instance: DagsterInstance, flows: Sequence[str]) -> dict[str, list[str]]:
    """The keys each flow module of `flows` added (flows without dynamic partitions skipped)."""
    added = {}
    for name in flows:
        module = importlib.import_module(name)
        if hasattr(module, "register_partitions"):
            added[name] = module.register_partitions(instance)
    return added


def main() -> int:
    from assets.definitions import FLOWS

    # DagsterInstance.get() refuses to run without DAGSTER_HOME: an ephemeral instance would
    # forget the partitions as soon as this process ends.
    with DagsterInstance.get() as instance:
        for flow, keys in register_all(instance, FLOWS).items():
            print(f"{flow}: added {len(keys)} partition(s){': ' + ', '.join(keys) if keys else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
