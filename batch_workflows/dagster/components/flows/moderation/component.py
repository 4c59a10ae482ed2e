"""``ModerationComponent``: a day's backlog → a provider batch off-peak → verdicts and flagged
items, one partition per UTC day::

    type: batch_workflows.dagster.ModerationComponent
    attributes:
      name: comments_llm
      key_prefix: [trust]
      watch_uri: s3://lake/comments/         # <day>.jsonl / .csv / .parquet
      start_date: "2025-01-01"
      strategy: llm                          # or embedding (zero-shot, calibrated thresholds)
      chat_model: gpt-4o-mini
      schedule: {hour_of_day: 2, minute_of_hour: 0}

Attributes are `ModerationSettings`' (``MODERATION_<NAME>`` in this repository), same defaults.
The strategy picks the endpoint (``/v1/chat/completions`` or ``/v1/embeddings``) when the YAML
loads: two instances with different strategies live side by side, each with its own keys.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from batch_workflows.dagster.components.flows.base import FlowComponent
from batch_workflows.dagster.components.flows.scaffold import FlowScaffolder
from batch_workflows.flows.moderation.settings import ModerationSettings

_D = ModerationSettings()


class DailyScheduleModel(dg.Model, dg.Resolvable):
    """When the previous UTC day runs (off-peak by default)."""

    hour_of_day: int = Field(default=2)
    minute_of_hour: int = Field(default=0)
    default_status: Literal["running", "stopped"] = "running"


class ModerationComponent(FlowComponent):
    """The moderation flow as a component (see the module doc)."""

    name: str = "moderation"
    owners: list[str] = Field(default_factory=lambda: ["team:trust-safety"])
    watch_uri: str = Field(default=_D.watch_uri, description="Folder or s3:// prefix of the "
                                                             "day files <YYYY-MM-DD>.<ext>.")
    start_date: str = Field(default=_D.start_date, description="The first daily partition.")
    strategy: Literal["embedding", "llm"] = Field(default=_D.strategy)
    policy_file: str | None = Field(default=_D.policy_file,
                                    description="None: the shipped OpenAI taxonomy.")
    embedding_model: str = _D.embedding_model
    chat_model: str = _D.chat_model
    max_tokens: int = Field(default=_D.max_tokens, description="llm: answer tokens.")
    prompt_examples: int = Field(default=_D.prompt_examples,
                                 description="llm: policy examples in the prompt.")
    min_f1: float = Field(default=_D.min_f1,
                          description="The accuracy check's floor (F1, flagged vs safe).")
    MINIMUMS = {**FlowComponent.MINIMUMS, "max_tokens": 1, "prompt_examples": 0, "min_f1": 0}
    NULL_IS_A_VALUE = frozenset({"schedule"})

    schedule: DailyScheduleModel | None = Field(
        default_factory=DailyScheduleModel, description="None: no schedule.")
    group_description: str = (
        "Content moderation by UTC day: the day's items judged against the policy through chat "
        "or embeddings batches (llm or embedding strategy), verdicts and flagged items as "
        "Parquet, with accuracy against labels; one partition per day.")

    @classmethod
    def example_attributes(cls, name: str) -> dict:
        return {"key_prefix": [], "watch_uri": f"data/{name}/", "start_date": _D.start_date,
                "strategy": "llm", "chat_model": _D.chat_model,
                "schedule": {"hour_of_day": 2, "minute_of_hour": 0}}

    def settings(self) -> ModerationSettings:
        return self.settings_of(ModerationSettings)

    def build_flow(self):
        from batch_workflows.dagster.components.flows.moderation.flow import ModerationFlow

        return ModerationFlow(self)


dg.scaffold_with(FlowScaffolder)(ModerationComponent)
