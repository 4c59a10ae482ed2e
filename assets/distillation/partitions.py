"""The distillation flow's partitions: one per prompt source, and the step that registers them.

Keys: ``sample-prompts`` (the shipped instruction prompts) and ``sample-pydoc`` (tasks grounded
in the shipped pydoc corpus), and otherwise a file's path relative to the watched folder or S3
prefix (``DISTILLATION_WATCH_URI``, default ``.data/inbox/distillation``).

Dagster 1.13's command line cannot add dynamic partitions; the inbox sensor adds them on its
ticks, and ``register_partitions(instance)`` (or ``python -m assets.register_partitions``, every
flow's) adds them explicitly before a fresh instance materializes one. Both add only what is
missing and let any storage or settings error propagate.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, DynamicPartitionsDefinition

from batch_workflows.flows.distillation.prompts import PROMPT_SUFFIXES, SAMPLE_KEYS
from batch_workflows.flows.distillation.settings import DistillationSettings
from batch_workflows.flows.inbox import unknown_keys
from batch_workflows.flows.sources import SourceFile, list_source_files
from batch_workflows.s3 import s3_client_for

NAME = "distillation"  # the flow's name: its assets' prefix and its folder in the artifact store
# The asset group's description (in every asset's metadata: Dagster has no group descriptions)
# and who answers for the flow.
GROUP_DESCRIPTION = (
    "Fine-tuning data by distillation: prompts (the shipped sets or inbox files) answered by a "
    "teacher model through /v1/chat/completions batches, filtered and split into train and "
    "validation JSONL with a dataset card; one partition per prompt set or file."
)
OWNERS = ("team:ml-platform",)
distillation_partitions = DynamicPartitionsDefinition(name="distillation_sources")


def settings() -> DistillationSettings:
    """The flow's settings, read from the environment at each use (a changed variable applies
    to the next run and sensor tick without reloading the code location)."""
    return DistillationSettings.from_env()


def sample_partition_keys() -> list[str]:
    """The shipped sample's partitions: they exist without a file."""
    return list(SAMPLE_KEYS)


def inbox_files() -> list[SourceFile]:
    """The prompt files under ``DISTILLATION_WATCH_URI``, each a partition."""
    watch_uri = settings().watch_uri
    return list_source_files(watch_uri, suffixes=PROMPT_SUFFIXES,
                             s3_client=s3_client_for(watch_uri))


def partition_keys() -> list[str]:
    """Every partition the flow has now: the shipped sample's, then one per inbox file."""
    return sample_partition_keys() + [f.name for f in inbox_files()]


def register_partitions(instance: DagsterInstance, keys: Sequence[str] | None = None) -> list[str]:
    """Add the partitions among `keys` (default: `partition_keys()`) that the instance lacks;
    returns the keys added."""
    known = instance.get_dynamic_partitions(distillation_partitions.name)
    missing = unknown_keys(partition_keys() if keys is None else keys, known)
    if missing:
        instance.add_dynamic_partitions(distillation_partitions.name, missing)
    return missing
