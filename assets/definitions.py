"""The code location: every flow's definitions plus resources built from the environment.

``workspace.yaml`` loads this module (``dagster dev -w workspace.yaml``). Add a flow by adding
its module to ``FLOWS``: each flow module exposes ``defs`` (a Definitions without resources).

Resources (all from the environment, so the same code runs locally, in CI and in production):

* ``batch``     — ``BatchResource.from_env()``: BATCH_PROVIDER, BATCH_BASE_URL, BATCH_API_KEY, …
                  (with the local provider, the embedded engine starts on first use; its data
                  lives in ``.data/engine``);
* ``artifacts`` — ``ArtifactStore.from_env()``: BATCH_ARTIFACTS_URI (``.data/artifacts`` or
                  ``s3://bucket/prefix``);
* ``qdrant``    — ``QdrantResource.from_env()``: QDRANT_URL / QDRANT_API_KEY / QDRANT_PATH.

Concurrency: submissions (``<name>_batch`` and the resubmitting ``<name>_results``) run in the
pool ``batch_submit_<provider>``. The repo's ``dagster.yaml`` (``concurrency: pools:
default_limit: 1``, telemetry off), which ``make dev`` and the demo copy into DAGSTER_HOME when it
has none, serialises the submissions to a provider so that each sees the in-flight count of the
ones before it. An existing DAGSTER_HOME/dagster.yaml is left alone: add that setting there.
"""

from __future__ import annotations

import importlib

from dagster import Definitions

from resources.artifacts import ArtifactStore
from resources.batch import BatchResource
from resources.vectors import QdrantResource

# The single list of flows in this code location (module paths exposing `defs`).
FLOWS: tuple[str, ...] = (
    "assets.embeddings",
    "assets.distillation",
    "assets.moderation",
)


def build_resources() -> dict[str, object]:
    """The resources every flow may use, configured from the environment."""
    return {
        "batch": BatchResource.from_env(),
        "artifacts": ArtifactStore.from_env(),
        "qdrant": QdrantResource.from_env(),
    }


def build_definitions(flows: tuple[str, ...] = FLOWS) -> Definitions:
    """Merge the flows' definitions and attach the resources."""
    flow_defs = [importlib.import_module(name).defs for name in flows]
    return Definitions.merge(*flow_defs, Definitions(resources=build_resources()))


defs = build_definitions()
