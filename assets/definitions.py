"""The code location: the flows declared in ``assets/defs/`` (one ``defs.yaml`` per flow, a
component of ``batch_workflows.dagster`` each), plus resources built from the environment.

``workspace.yaml`` and ``dg`` load this module (``dagster dev -w workspace.yaml``, ``dg dev``).
Add a flow by adding a folder with its ``defs.yaml`` under ``assets/defs/``
(``dg scaffold defs batch_workflows.dagster.EmbeddingsComponent my_flow``).

Resources (all from the environment, ``resources.build_resources``, so the same code runs
locally, in CI and in production):

* ``batch``     — BATCH_PROVIDER, BATCH_BASE_URL, BATCH_API_KEY, … (with the local provider, the
                  embedded engine starts on first use; its data lives in ``.data/engine``);
* ``artifacts`` — BATCH_ARTIFACTS_URI (``.data/artifacts`` or ``s3://bucket/prefix``);
* ``qdrant``    — QDRANT_URL / QDRANT_API_KEY / QDRANT_PATH.

Automation (``assets.automation``): every sensor and schedule that is safe unattended is RUNNING
by default, and so is ``automation_condition_sensor``, which evaluates the assets' automation
conditions: with ``dagster dev`` (or ``dagster-daemon run``) a batch collected by the daemon's
batch sensor is followed by its downstream asset with nobody in the UI.

Concurrency: submissions (``<name>_batch`` and the resubmitting ``<name>_results``) run in the
pool ``batch_submit_batch``, which the lifecycle gives one slot in the instance the first time it
meets it (``batch_workflows.dagster.ensure_pool``): submissions to the provider are serialised,
so each sees the in-flight count of the ones before it. No other pool is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import Definitions, ExecutorDefinition, in_process_executor, load_from_defs_folder

from assets.automation import automation_sensor
from assets.flows import FLOWS, PROJECT
from batch_workflows.errors import ConfigurationError
from resources import build_resources

__all__ = ["FLOWS", "build_definitions", "build_executor", "defs"]

def build_executor() -> ExecutorDefinition | None:
    """``RUN_EXECUTOR=in_process``: every step of a run in the run's own process, which saves a
    process start and a code load per step on a small machine; unset or ``multiprocess``:
    Dagster's default (a process per step)."""
    choice = os.environ.get("RUN_EXECUTOR", "").strip().lower()
    if choice in ("", "multiprocess"):
        return None
    if choice == "in_process":
        return in_process_executor
    raise ConfigurationError(f"RUN_EXECUTOR={choice!r}: expected in_process or multiprocess")


def build_definitions(project: Path = PROJECT) -> Definitions:
    """The defs folder's flows; with the resources and the automation-condition sensor (on by
    default: the daemon carries a collected batch on to its downstream asset)."""
    return Definitions.merge(
        load_from_defs_folder(path_within_project=project),
        Definitions(resources=build_resources(), sensors=[automation_sensor()],
                    executor=build_executor()))

defs = build_definitions()
