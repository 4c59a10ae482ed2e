"""The Dagster integration: the part of ``batch_workflows`` that imports Dagster.

Bind the resources once, by key, and declare flows with the factory (or, in YAML, with the
components)::

    import dagster as dg
    from batch_workflows.dagster import ArtifactStore, BatchResource, batch_lifecycle

    triage = batch_lifecycle("ticket_triage", dg.DailyPartitionsDefinition("2025-01-01"),
                             "/v1/chat/completions", build_requests, key_prefix=["support"])
    defs = dg.Definitions.merge(triage.to_definitions(), dg.Definitions(resources={
        "batch": BatchResource(provider="openai", api_key=dg.EnvVar("OPENAI_API_KEY")),
        "artifacts": ArtifactStore(base_uri="s3://my-bucket/batch-workflows"),
    }))

* ``resources`` — ``BatchResource``, ``ArtifactStore``, ``QdrantResource``;
* ``lifecycle`` — ``batch_lifecycle`` (requests → batch → results assets, the tracking sensor,
  checks) and ``load_results`` / ``fetch_results`` for downstream assets;
* ``inbox`` — ``inbox_sensor``: a run per new or changed file of a watched folder or prefix;
* ``concurrency`` — ``ensure_pool``: the one-slot pool of a provider's submissions;
* ``components`` — ``BatchInferenceComponent``: a flow declared in YAML (rows → requests →
  batches → an output table); ``BatchResourceComponent`` and ``ArtifactStoreComponent`` bind
  the resources in YAML; ``EmbeddingsComponent``, ``ModerationComponent`` and
  ``DistillationComponent`` are the three shipped flows, their settings as attributes;
  ``register_dynamic_partitions`` adds the partitions a component's ``dynamic_partitions()``
  names that an instance lacks. ``dg`` finds the components through the
  ``dagster_dg_cli.registry_modules`` entry point.

Nothing here reads the environment when definitions load: settings come from arguments,
resource configuration or YAML.
"""

from batch_workflows.dagster.components import (
    ArtifactStoreComponent,
    BatchInferenceComponent,
    BatchResourceComponent,
    DistillationComponent,
    EmbeddingsComponent,
    ModerationComponent,
)
from batch_workflows.dagster.components.flows.base import register_dynamic_partitions
from batch_workflows.dagster.concurrency import ensure_pool
from batch_workflows.dagster.inbox import inbox_sensor, materialized_since
from batch_workflows.dagster.lifecycle.checks import CHECK_ACCOUNTED, CHECK_ERROR_RATE
from batch_workflows.dagster.lifecycle.factory import (
    DEFAULT_OWNERS,
    GROUP_DESCRIPTION_KEY,
    BatchLifecycle,
    accept_backfill_policy,
    batch_lifecycle,
)
from batch_workflows.dagster.lifecycle.metadata import combined_metadata
from batch_workflows.dagster.lifecycle.results import fetch_results, load_results, results_key
from batch_workflows.dagster.lifecycle.spec import LifecycleSpec, RequestBuilder
from batch_workflows.dagster.resources import (
    ArtifactStore,
    BatchResource,
    QdrantResource,
    submission_pool,
)
from batch_workflows.lifecycle import partition_dir

__all__ = [
    "CHECK_ACCOUNTED", "CHECK_ERROR_RATE", "DEFAULT_OWNERS", "GROUP_DESCRIPTION_KEY",
    "ArtifactStore", "ArtifactStoreComponent", "BatchInferenceComponent", "BatchLifecycle",
    "BatchResourceComponent", "BatchResource", "DistillationComponent", "EmbeddingsComponent",
    "ModerationComponent", "LifecycleSpec", "QdrantResource",
    "RequestBuilder", "accept_backfill_policy", "batch_lifecycle", "combined_metadata", "ensure_pool",
    "fetch_results", "inbox_sensor", "load_results", "materialized_since", "partition_dir",
    "register_dynamic_partitions", "results_key", "submission_pool",
]
