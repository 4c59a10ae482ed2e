"""The distillation flow's settings, from the ``DISTILLATION_*`` variables.

The teacher is any chat model the batch resource's provider serves (``DISTILLATION_MODEL``); the
provider itself (local engine, Nebius, OpenAI, another OpenAI-compatible API) is the batch
resource's (``BATCH_PROVIDER``, ``BATCH_BASE_URL``, ``BATCH_API_KEY``), so switching teacher and
provider is configuration alone. Sampling settings go into every request body (and so into the
submission key); the filter, split and format settings act after the batch and cost nothing to
change: re-materialize ``distillation_dataset`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from batch_workflows.errors import ConfigurationError

# The local engine's default chat model (issue 9): SmolLM2-135M-Instruct. A weak teacher that
# writes fluent short answers; real quality comes from a provider's or a bigger local model.
DEFAULT_TEACHER = "SmolLM2-135M-Instruct"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, accurate assistant. Answer the user's request directly and concisely."
)
FORMATS = ("messages", "prompt_completion")


def optional_float(raw: object) -> float | None:
    """A number, or None for "none" (a sampling setting that is not sent)."""
    return None if raw is None or raw == "none" else float(raw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DistillationSettings:
    """The flow's knobs (each one's variable is ``DISTILLATION_<NAME>`` in upper case)."""

    model: str = DEFAULT_TEACHER
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # "" = no system message; "{task}" is filled in
    temperature: float | None = 0.7  # None ("none"): not sent (Claude from 4.7 takes none)
    top_p: float | None = 0.95  # None ("none"): not sent
    max_tokens: int = 256
    seed: int | None = 1234  # sample k of a prompt uses seed + k; None = no seed
    samples: int = 1  # answers asked per prompt
    watch_uri: str = ".data/inbox/distillation"
    prompt_column: str = "prompt"
    system_column: str = "system"
    context_column: str = "context"
    passage_chars: int = 1500  # pydoc passages: at most this many characters
    passages_per_topic: int = 1
    validation_fraction: float = 0.1
    max_answer_tokens: int = 2048  # answers longer than this are dropped
    near_dup_threshold: float = 0.85  # MinHash Jaccard at which answers count as near duplicates
    near_dup_min_words: int = 8  # shorter answers are compared exactly only
    format: str = "messages"  # or "prompt_completion"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigurationError(
                f"DISTILLATION_FORMAT must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigurationError("DISTILLATION_VALIDATION_FRACTION must be in [0, 1)")
        if not 0.0 < self.near_dup_threshold < 1.0:
            raise ConfigurationError("DISTILLATION_NEAR_DUP_THRESHOLD must be in (0, 1)")
        for name in ("max_tokens", "samples", "passage_chars", "passages_per_topic",
                     "max_answer_tokens", "near_dup_min_words"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"DISTILLATION_{name.upper()} must be at least 1")

    @classmethod
    def from_env(cls) -> DistillationSettings:
        env, d = os.environ, cls()

        def read(name: str, kind: Callable[[str], object], default: object) -> object:
            raw = env.get(f"DISTILLATION_{name}")
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                what = 'a number or "none"' if kind is optional_float else kind.__name__
                raise ConfigurationError(
                    f"DISTILLATION_{name} must be {what}, got {raw!r}") from None

        seed = env.get("DISTILLATION_SEED")
        return cls(
            model=str(read("MODEL", str, d.model)),
            # An empty value is a setting here: no system message.
            system_prompt=env.get("DISTILLATION_SYSTEM_PROMPT", d.system_prompt),
            temperature=read("TEMPERATURE", optional_float, d.temperature),
            top_p=read("TOP_P", optional_float, d.top_p),
            max_tokens=int(read("MAX_TOKENS", int, d.max_tokens)),
            seed=None if seed == "none" else int(read("SEED", int, d.seed)),
            samples=int(read("SAMPLES", int, d.samples)),
            watch_uri=str(read("WATCH_URI", str, d.watch_uri)),
            prompt_column=str(read("PROMPT_COLUMN", str, d.prompt_column)),
            system_column=str(read("SYSTEM_COLUMN", str, d.system_column)),
            context_column=str(read("CONTEXT_COLUMN", str, d.context_column)),
            passage_chars=int(read("PASSAGE_CHARS", int, d.passage_chars)),
            passages_per_topic=int(read("PASSAGES_PER_TOPIC", int, d.passages_per_topic)),
            validation_fraction=float(read("VALIDATION_FRACTION", float, d.validation_fraction)),
            max_answer_tokens=int(read("MAX_ANSWER_TOKENS", int, d.max_answer_tokens)),
            near_dup_threshold=float(read("NEAR_DUP_THRESHOLD", float, d.near_dup_threshold)),
            near_dup_min_words=int(read("NEAR_DUP_MIN_WORDS", int, d.near_dup_min_words)),
            format=str(read("FORMAT", str, d.format)),
        )

    @property
    def sampling(self) -> dict[str, object]:
        """What the request bodies carry besides model and messages."""
        sampling = {"temperature": self.temperature, "top_p": self.top_p,
                    "max_tokens": self.max_tokens}
        return {name: value for name, value in sampling.items() if value is not None}
