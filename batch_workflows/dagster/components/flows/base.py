"""``FlowComponent``: what the three shipped flows' components share.

A flow component is a thin layer: its attributes are the flow's settings (the dataclass in
``batch_workflows.flows.<flow>.settings``, field for field, same defaults) plus the Dagster
ones below; ``build_flow()`` wires them into the lifecycle factory and the flow's own assets.
The built flow is kept, so ``build_defs``, partition registration and tests see one object.

Keys: ``key_prefix`` unset gives flat keys (``embeddings_requests``, ``embeddings_index``, …,
this repository's); a list (empty too) gives ``[*key_prefix, name, "requests"]``, … so two
instances of a flow in one deployment never collide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, ClassVar, Literal, TypeVar

import dagster as dg
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from batch_workflows.dagster.lifecycle.factory import GROUP_DESCRIPTION_KEY
from batch_workflows.errors import ConfigurationError

T = TypeVar("T")


class FlowComponent(dg.Component, dg.Resolvable, dg.Model):
    """Attributes every flow component has (subclasses add the flow's settings)."""

    name: str = Field(description="The flow's name: its asset keys, group and artifact folder.")
    key_prefix: list[str] | None = Field(
        default=None, description="None: flat keys <name>_requests, …; a list: "
                                  "[*key_prefix, name, 'requests'], …")
    namespace: str | None = Field(
        default=None, description="This flow's part of its batches' identity at the provider "
                                  "(re-attach, cancel and tracking touch only its batches); "
                                  "None: the batch resource's, by default a digest of the "
                                  "artifact store's URI.")
    batch_resource_key: str = "batch"
    artifacts_resource_key: str = "artifacts"
    group_name: str | None = Field(default=None, description="None: the flow's name.")
    owners: list[str] = Field(default_factory=lambda: ["team:ml-platform"])
    tags: dict[str, str] = Field(default_factory=dict)
    op_tags: dict[str, Any] = Field(default_factory=dict)
    max_error_rate: float = Field(default=0.05,
                                  description="The lifecycle's error_rate check bound.")
    sensor_interval_seconds: int = Field(default=15,
                                         description="The batch tracking sensor's interval.")
    inbox_interval_seconds: int = Field(default=30, description="The inbox sensor's.")
    inbox_sensor_status: Literal["running", "stopped"] = "running"

    _flow: Any = PrivateAttr(default=None)
    # Lower bounds checked after templates resolve (a schema bound would refuse "{{ env.X }}").
    MINIMUMS: ClassVar[dict[str, float]] = {
        "max_error_rate": 0, "sensor_interval_seconds": 1, "inbox_interval_seconds": 1}
    # Attributes where "" is a setting of its own (not "unset"): e.g. no system prompt.
    EMPTY_IS_A_VALUE: ClassVar[frozenset[str]] = frozenset()
    # Attributes where null is a setting of its own (e.g. no schedule).
    NULL_IS_A_VALUE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _unset_means_default(cls, data: Any) -> Any:
        """null (and "" where it means nothing) takes the attribute's default: a defs.yaml can
        say ``chunk_tokens: "{{ env.EMBEDDINGS_CHUNK_TOKENS }}"`` and an unset variable leaves
        the component's own default, written once, here."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items()
                if (v is not None or k in cls.NULL_IS_A_VALUE)
                and (v != "" or k in cls.EMPTY_IS_A_VALUE)}

    @model_validator(mode="after")
    def _check_minimums(self) -> Any:
        for name, low in self.MINIMUMS.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{name}: {value} is below its minimum {low:g}")
        return self

    @classmethod
    def resolve_from_model(cls, context: Any, model: BaseModel) -> Any:
        """As Dagster's, but a bad value names its attribute and what the YAML said there: a
        value from ``{{ env.X }}`` names X (Dagster's own error names only the component)."""
        try:
            return super().resolve_from_model(context, model)
        except ValidationError as e:
            raise ConfigurationError(_explain(cls.__name__, e, model)) from e

    # -- hooks ----------------------------------------------------------------------------------
    def build_flow(self) -> Any:
        """The flow's definitions object (a subclass's `Flow`); built once, see `flow()`."""
        raise NotImplementedError

    def dynamic_partitions(self) -> Mapping[str, Sequence[str]]:
        """Dynamic partitions the flow has now, by partitions-definition name (registered by
        ``python -m assets.register_partitions`` for every component of a code location)."""
        return {}

    # -- shared ---------------------------------------------------------------------------------
    def flow(self) -> Any:
        if self._flow is None:
            self._flow = self.build_flow()
        return self._flow

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.flow().definitions()

    def lifecycle_options(self) -> dict[str, Any]:
        """The factory's keyword arguments that come straight from the attributes."""
        return {"key_prefix": self.key_prefix, "batch_resource_key": self.batch_resource_key,
                "artifacts_resource_key": self.artifacts_resource_key,
                "group_name": self.group_name, "owners": self.owners, "tags": self.tags,
                "op_tags": self.op_tags, "max_error_rate": self.max_error_rate,
                "sensor_interval_seconds": self.sensor_interval_seconds,
                "namespace": self.namespace}

    def output_asset_options(self, lifecycle: Any, step: str) -> dict[str, Any]:
        """The ``@asset`` arguments a flow's output asset (``step``: ``index``, ``verdicts``,
        ``dataset``) shares with its lifecycle: key beside the others, partitions, after the
        results, the same group, owners, tags and group description."""
        results = lifecycle.results
        return {"key": lifecycle.spec.key(step), "partitions_def": lifecycle.spec.partitions_def,
                "deps": [results], "group_name": results.group_names_by_key[results.key],
                "owners": self.owners, "tags": self.tags, "op_tags": self.op_tags,
                "metadata": {GROUP_DESCRIPTION_KEY: self.group_description}}

    @property
    def definition_name(self) -> str:
        """Unique in a code location: the flow's sensors, jobs and partitions are named by it."""
        return "__".join([*(self.key_prefix or ()), self.name])

    @property
    def inbox_status(self) -> dg.DefaultSensorStatus:
        return (dg.DefaultSensorStatus.RUNNING if self.inbox_sensor_status == "running"
                else dg.DefaultSensorStatus.STOPPED)

    def settings_of(self, cls: type[T], **overrides: Any) -> T:
        """The flow's settings dataclass `cls` from the attributes of the same names."""
        values = {f.name: getattr(self, f.name) for f in fields(cls) if hasattr(self, f.name)}
        return cls(**{**values, **overrides})


def _explain(component: str, error: ValidationError, raw: BaseModel) -> str:
    """One line per problem: the attribute, its value, the YAML text it came from."""
    written = raw.model_dump(exclude_unset=True) if raw is not None else {}
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        # A model-level check (e.g. a minimum) has no location: its message starts with the name.
        named = re.match(r"(\w+):", message)
        attr = str(problem["loc"][0]) if problem["loc"] else (named.group(1) if named else "")
        source = written.get(attr)
        said = f" (the YAML says {source!r})" if isinstance(source, str) and "{{" in source else ""
        value = f" = {problem['input']!r}" if problem["loc"] else ""
        lines.append(f"{attr or '(attributes)'}{value}{said}: {message}")
    return f"{component}: " + "; ".join(lines)


def register_dynamic_partitions(instance: dg.DagsterInstance,
                                partitions: Mapping[str, Sequence[str]]) -> list[str]:
    """Add the keys the instance lacks, per partitions definition; returns the keys added."""
    from batch_workflows.flows.inbox import unknown_keys

    added: list[str] = []
    for name, keys in partitions.items():
        missing = unknown_keys(keys, instance.get_dynamic_partitions(name))
        if missing:
            instance.add_dynamic_partitions(name, missing)
        added += missing
    return added
