"""The client for a provider profile: ``BatchClient`` for the OpenAI-format Batch APIs,
``AnthropicBatchClient`` for Anthropic's Message Batches, which keeps its create intents in a
``Storage``: the deployment's artifact store when the caller has one (the lifecycle's assets and
sensor pass theirs), else a local folder at `state_dir` (a script, a notebook). The one choice
shared by the batch resource and the command line."""

from __future__ import annotations

import os
from typing import Any

from batch_workflows.anthropic_batches.client import AnthropicBatchClient
from batch_workflows.client import BatchClient
from batch_workflows.lifecycle.storage import LocalFolder, Storage
from batch_workflows.profiles import PROFILES

DEFAULT_STATE_DIR = ".data/anthropic"


def open_client(provider: str | None, base_url: str, api_key: str | None, *,
                store: Storage | None = None, namespace: str | None = None,
                state_dir: str | os.PathLike[str] | None = None,
                **options: Any) -> BatchClient:
    """A client for `provider`. `store` and `namespace` (the deployment's) say where an
    Anthropic client keeps its intents; without a store, in ``LocalFolder(state_dir)``."""
    profile = PROFILES.get((provider or "").strip().lower())
    if profile is not None and profile.api == "anthropic":
        if store is None:
            store = LocalFolder(state_dir or DEFAULT_STATE_DIR)
        return AnthropicBatchClient(base_url, api_key, store=store, namespace=namespace,
                                    **options)
    return BatchClient(base_url, api_key=api_key, **options)
