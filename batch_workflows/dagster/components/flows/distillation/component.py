"""``DistillationComponent``: prompts → a teacher model through /v1/chat/completions batches →
a supervised fine-tuning dataset (train/validation JSONL, metadata, card)::

    type: batch_workflows.dagster.DistillationComponent
    attributes:
      name: support_sft
      key_prefix: [ml]
      watch_uri: s3://lake/prompts/          # one partition per prompt file
      shipped_samples: false                 # without the shipped sample partitions
      teacher_model: gpt-4o
      temperature: 0.3
      samples: 2
      format: messages

Attributes are `DistillationSettings`' (``DISTILLATION_<NAME>`` in this repository; the
teacher's is ``DISTILLATION_MODEL``), with the same defaults. Sampling settings enter every
request (and so the submission key); filters, split and format act after the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from batch_workflows.dagster.components.flows.base import FlowComponent
from batch_workflows.dagster.components.flows.scaffold import FlowScaffolder
from batch_workflows.flows.distillation.settings import DEFAULT_SYSTEM_PROMPT, DistillationSettings

_D = DistillationSettings()


class DistillationComponent(FlowComponent):
    """The distillation flow as a component (see the module doc)."""

    name: str = "distillation"
    teacher_model: str = Field(default=_D.model, description="The chat model answering.")
    system_prompt: str | None = Field(
        default=None, description='None: the shipped one; "": no system message; "{task}" is '
                                  "filled in.")
    temperature: float | None = Field(default=_D.temperature, description="None/'none': not "
                                      "sent (Claude models from 4.7 on take no sampling "
                                      "parameters).")
    top_p: float | None = Field(default=_D.top_p, description="None/'none': not sent.")
    max_tokens: int = Field(default=_D.max_tokens)
    seed: int | None = Field(default=_D.seed, description="Sample k uses seed + k; None/'none': "
                                                          "no seed.")
    samples: int = Field(default=_D.samples, description="Answers asked per prompt.")
    watch_uri: str = Field(default=_D.watch_uri, description="Folder or s3:// prefix; each "
                                                             "prompt file is a partition.")
    shipped_samples: bool = Field(default=True, description="The shipped sample-prompts and "
                                  "sample-pydoc partitions.")
    prompt_column: str = _D.prompt_column
    system_column: str = _D.system_column
    context_column: str = _D.context_column
    passage_chars: int = Field(default=_D.passage_chars)
    passages_per_topic: int = Field(default=_D.passages_per_topic)
    validation_fraction: float = Field(default=_D.validation_fraction)
    max_answer_tokens: int = Field(default=_D.max_answer_tokens)
    near_dup_threshold: float = Field(default=_D.near_dup_threshold)
    near_dup_min_words: int = Field(default=_D.near_dup_min_words)
    format: Literal["messages", "prompt_completion"] = _D.format
    group_description: str = (
        "Fine-tuning data by distillation: prompts (the shipped sets or inbox files) answered "
        "by a teacher model through /v1/chat/completions batches, filtered and split into train "
        "and validation JSONL with a dataset card; one partition per prompt set or file.")

    EMPTY_IS_A_VALUE = frozenset({"system_prompt"})

    @field_validator("seed", "temperature", "top_p", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        return None if value == "none" else value

    @classmethod
    def example_attributes(cls, name: str) -> dict:
        return {"key_prefix": [], "watch_uri": f"data/{name}/", "shipped_samples": False,
                "teacher_model": _D.model, "temperature": _D.temperature,
                "max_tokens": _D.max_tokens, "samples": 1, "format": "messages"}

    def settings(self) -> DistillationSettings:
        prompt = DEFAULT_SYSTEM_PROMPT if self.system_prompt is None else self.system_prompt
        return self.settings_of(DistillationSettings, model=self.teacher_model,
                                system_prompt=prompt)

    def build_flow(self):
        from batch_workflows.dagster.components.flows.distillation.flow import DistillationFlow

        return DistillationFlow(self)

    def dynamic_partitions(self) -> Mapping[str, Sequence[str]]:
        flow = self.flow()
        return {flow.partitions_def.name: flow.partition_keys()}


dg.scaffold_with(FlowScaffolder)(DistillationComponent)
