"""The moderation flow's settings, from the ``MODERATION_*`` variables (read at each use)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.moderation import llm
from batch_workflows.flows.moderation.calibration import load_calibration
from batch_workflows.flows.moderation.judges import EMBEDDING, STRATEGIES, Judge, make_judge
from batch_workflows.flows.moderation.taxonomy import Policy, load_policy
from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL

DEFAULT_CHAT_MODEL = "SmolLM2-135M-Instruct"  # the local engine's chat model


@dataclass(frozen=True)
class ModerationSettings:
    """The flow's knobs; every one has a working local default."""

    watch_uri: str = ".data/inbox/moderation"
    strategy: str = EMBEDDING  # chosen by the measured figures, see docs/moderation.md
    policy_file: str | None = None  # None: the shipped OpenAI taxonomy
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    chat_model: str = DEFAULT_CHAT_MODEL
    max_tokens: int = llm.DEFAULT_MAX_TOKENS
    prompt_examples: int = llm.DEFAULT_PROMPT_EXAMPLES
    min_f1: float = 0.7  # the accuracy check's floor (flagged vs safe F1 on labelled items)
    start_date: str = "2025-03-01"  # the first daily partition (the shipped sample's first day)

    @property
    def model(self) -> str:
        return self.chat_model if self.strategy != EMBEDDING else self.embedding_model

    def policy(self) -> Policy:
        return load_policy(self.policy_file)

    def judge(self, policy: Policy, *, calibrated: bool) -> Judge:
        """The strategy's judge; `calibrated`: with the embedding thresholds (to read verdicts;
        building requests needs none)."""
        calibration = (load_calibration(policy, self.model)
                       if calibrated and self.strategy == EMBEDDING else None)
        return make_judge(self.strategy, policy, self.model, calibration=calibration,
                          max_tokens=self.max_tokens, prompt_examples=self.prompt_examples)

    @classmethod
    def from_env(cls) -> ModerationSettings:
        env, d = os.environ, cls()
        strategy = (env.get("MODERATION_STRATEGY") or d.strategy).strip().lower()
        if strategy not in STRATEGIES:
            raise ConfigurationError(
                f"MODERATION_STRATEGY must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        return cls(
            watch_uri=env.get("MODERATION_WATCH_URI") or d.watch_uri,
            strategy=strategy,
            policy_file=env.get("MODERATION_POLICY") or None,
            embedding_model=env.get("MODERATION_EMBEDDING_MODEL") or d.embedding_model,
            chat_model=env.get("MODERATION_CHAT_MODEL") or d.chat_model,
            max_tokens=_number(env, "MODERATION_MAX_TOKENS", d.max_tokens, int),
            prompt_examples=_number(env, "MODERATION_PROMPT_EXAMPLES", d.prompt_examples, int),
            min_f1=_number(env, "MODERATION_MIN_F1", d.min_f1, float),
            start_date=env.get("MODERATION_START_DATE") or d.start_date,
        )


def _number(env: os._Environ[str], name: str, default: float, kind: type) -> float:
    raw = env.get(name)
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
