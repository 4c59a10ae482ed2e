"""The client for a provider profile: ``BatchClient`` for the OpenAI-format Batch APIs,
``AnthropicBatchClient`` for Anthropic's Message Batches (which keeps its create intents under
`state_dir`). The one choice shared by the batch resource and the command line."""

from __future__ import annotations

import os
from typing import Any

from batch_workflows.anthropic_batches.client import AnthropicBatchClient
from batch_workflows.client import BatchClient
from batch_workflows.profiles import PROFILES

DEFAULT_STATE_DIR = ".data/anthropic"


def open_client(provider: str | None, base_url: str, api_key: str | None, *,
                state_dir: str | os.PathLike[str] | None = None, **options: Any) -> BatchClient:
    profile = PROFILES.get((provider or "").strip().lower())
    if profile is not None and profile.api == "anthropic":
        return AnthropicBatchClient(base_url, api_key,
                                    state_dir=state_dir or DEFAULT_STATE_DIR, **options)
    return BatchClient(base_url, api_key=api_key, **options)
