"""The batch resource: which Batch API to talk to, with which limits, budget and patience.

Bind it once under a key (``"batch"`` by default) with its settings in code or YAML; secrets as
``EnvVar``. Nothing here reads the environment: this repository's code location binds it from
``BATCH_*`` variables (``resources.batch_resource_from_env``)::

    BatchResource(provider="openai", api_key=EnvVar("OPENAI_API_KEY"), max_cost_usd=50)

**The local engine.** ``provider="local"`` talks to ``batch-workflows serve`` at ``base_url``
(default ``http://127.0.0.1:8765/v1``). Only with ``start_local_engine=True`` (and the
``engine`` extra installed) does the first use start it when nothing answers there, as a
detached background process with its state under ``engine_data_dir`` and its log in
``<engine_data_dir>/engine.log``; it keeps running after Dagster exits (batches outlive runs, as
at a real provider); stop it with the pid in ``<engine_data_dir>/engine.pid``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from batch_workflows.client import BatchClient
from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle import Budget, Policy, resolve_namespace
from batch_workflows.pricing import PriceTable
from batch_workflows.profiles import PROFILES, ProviderProfile, get_profile, resolve_base_url
from batch_workflows.provider_client import DEFAULT_STATE_DIR, open_client
from batch_workflows.server import launch
from batch_workflows.wire import parse_duration

PROVIDERS = tuple(PROFILES)
DEFAULT_ENGINE_DATA_DIR = ".data/engine"


class BatchResource(ConfigurableResource):
    """Access to one OpenAI-compatible Batch API plus the lifecycle's policies."""

    provider: str = Field(
        description="provider profile: local | openai | azure | nebius | groq | deepinfra | "
                    "anthropic | custom")
    namespace: str | None = Field(
        default=None,
        description="This deployment's part of every batch's identity (metadata and key): "
                    "re-attach, cancel and tracking touch only its batches. None = a digest of "
                    "the artifact store's base URI, so deployments with different stores differ.")
    enqueued_token_limit: int | None = Field(
        default=None,
        description="Input tokens that may be enqueued per model at once (your tier's batch "
                    "queue limit); None = the profile's published default, if any.")
    enqueued_token_limits: dict[str, int] = Field(
        default_factory=dict, description="Per-model enqueued-token limits (win over the above).")
    capacity_timeout_seconds: float | None = Field(
        default=None,
        description="How long to wait for provider capacity (quota, 429, token_limit_exceeded) "
                    "before reporting it; None = the wait timeout.")
    delete_input_files: bool = Field(
        default=True,
        description="Delete each batch's input file at the provider once the batch is terminal "
                    "and its results are stored.")
    base_url: str | None = Field(
        default=None, description="API root including /v1; None = the provider profile's.")
    api_key: str | None = Field(
        default=None, description="Bearer key; pass EnvVar('BATCH_API_KEY'). Never logged.")
    poll_interval_seconds: float = Field(default=60.0, description="Seconds between polls.")
    completion_window: str = Field(default="24h", description="Batch completion window.")
    max_in_flight_batches: int | None = Field(
        default=None, description="Cap on non-terminal batches at the provider; None = profile's.")
    max_attempts: int = Field(
        default=3, description="Attempts per request: the first submission plus resubmissions.")
    price_file: str | None = Field(
        default=None, description="Prices CSV; None = the packaged batch_workflows/data/prices.csv.")
    max_cost_usd: float | None = Field(
        default=None, description="Refuse to submit when the estimated cost is above this.")
    blocking: bool | None = Field(
        default=None,
        description="Wait for batches inside the run; None = only for the local provider.")
    wait_timeout_seconds: float | None = Field(
        default=None, description="Deadline of a blocking wait; None = the completion window + 1h.")
    max_requests_per_file: int | None = Field(
        default=None, description="Override of the profile's requests per shard.")
    max_bytes_per_file: int | None = Field(
        default=None, description="Override of the profile's bytes per shard.")
    engine_data_dir: str = Field(
        default=DEFAULT_ENGINE_DATA_DIR,
        description="Where a local engine started by this resource keeps its state.")
    start_local_engine: bool = Field(
        default=False,
        description="provider=local: start `batch-workflows serve` when nothing listens at "
                    "base_url (needs the engine extra); False: it must be running.")
    engine_start_timeout_seconds: float = Field(default=300.0)
    state_dir: str = Field(
        default=DEFAULT_STATE_DIR,
        description="provider=anthropic, direct use only: where get_client() without an "
                    "artifact store keeps the create intents and translated inputs (a local "
                    "folder). The lifecycle's assets and sensor keep them in the artifact "
                    "store, under _anthropic/<namespace>/, never on the worker's disk.")
    request_timeout_seconds: float = Field(default=60.0)
    max_retries: int = Field(default=6, description="HTTP retries per call (429/5xx/resets).")

    # -- derived settings --------------------------------------------------------------------
    def get_profile(self) -> ProviderProfile:
        """The provider profile with this resource's overrides applied."""
        if self.provider not in PROVIDERS:
            raise ConfigurationError(
                f"unknown provider {self.provider!r}; expected one of {', '.join(PROVIDERS)}")
        base = get_profile(self.provider)
        if not base.base_url and not self.base_url:
            raise ConfigurationError(f"provider {self.provider!r} needs base_url")
        changes: dict[str, Any] = {"completion_window": base.check_window(self.completion_window)}
        if self.enqueued_token_limit:
            changes["default_enqueued_token_limit"] = self.enqueued_token_limit
            changes["enqueued_token_limits"] = {}  # the user's tier replaces published defaults
        if self.enqueued_token_limits:
            changes["enqueued_token_limits"] = {
                **(changes.get("enqueued_token_limits", base.enqueued_token_limits)),
                **self.enqueued_token_limits}
        if self.base_url:
            changes["base_url"] = self.base_url
        if self.max_requests_per_file:
            changes["max_requests_per_file"] = self.max_requests_per_file
        if self.max_bytes_per_file:
            changes["max_bytes_per_file"] = self.max_bytes_per_file
        if self.max_in_flight_batches:
            changes["max_batches_in_flight"] = self.max_in_flight_batches
        return base.with_limits(**changes)

    @property
    def resolved_base_url(self) -> str:
        """`base_url`, else the profile's (``profiles.resolve_base_url``, the CLI's rule too)."""
        if self.provider in PROFILES and not PROFILES[self.provider].base_url and not self.base_url:
            raise ConfigurationError(f"provider {self.provider!r} needs base_url")
        return resolve_base_url(self.provider, self.base_url, environ=None)

    @property
    def resolved_api_key(self) -> str | None:
        """The key's value: Dagster resolves an EnvVar in runs; direct use reads it here."""
        key = self.api_key
        if isinstance(key, EnvVar):
            return key.get_value()
        return key or None

    @property
    def is_blocking(self) -> bool:
        """Whether runs wait for their batches (default: only with the local engine)."""
        return self.provider == "local" if self.blocking is None else self.blocking

    @property
    def wait_timeout(self) -> float:
        if self.wait_timeout_seconds is not None:
            return self.wait_timeout_seconds
        return parse_duration(self.completion_window) + 3600.0

    # -- clients -----------------------------------------------------------------------------
    def get_client(self, store: Any = None, namespace: str | None = None) -> BatchClient:
        """A BatchClient for the provider (starting the embedded engine first when needed).

        `store` is the deployment's artifact store (a ``Storage``): provider=anthropic keeps
        its create intents there, under `namespace` (default: this deployment's, as
        ``namespace_for(store)`` gives it, the one the lifecycle's policy uses). Without a
        store they go to a local folder at `state_dir`, fine for a script, not for runs that
        may each start in a fresh container.
        """
        if self.provider == "local" and self.start_local_engine:
            self.ensure_local_engine()
        if store is not None:
            namespace = namespace or self.namespace_for(store)
        return open_client(self.provider, self.resolved_base_url, self.resolved_api_key,
                           store=store, namespace=namespace or self.namespace,
                           state_dir=self.state_dir, timeout=self.request_timeout_seconds,
                           max_retries=self.max_retries)

    def price_table(self) -> PriceTable:
        return PriceTable.load(self.price_file) if self.price_file else PriceTable.default()

    def namespace_for(self, store: Any) -> str:
        """This deployment's namespace: `namespace`, else a digest of `store`'s base URI."""
        return resolve_namespace(self.namespace, store)

    def policy(self, *, metadata: Mapping[str, str] | None = None,
               extra_body: Mapping[str, Any] | None = None,
               warn: Callable[[str], Any] | None = None, store: Any = None) -> Policy:
        """The lifecycle's policy from these settings: limits, attempts, patience, budget, prices
        and, given the artifact `store` (or `namespace`), the deployment's namespace.

        A price table that cannot be read leaves the cost out (reported through `warn`), unless
        a budget needs it: then the error propagates and nothing is submitted.
        """
        try:
            prices: PriceTable | None = self.price_table()
        except (ConfigurationError, OSError) as exc:
            if self.max_cost_usd is not None:
                raise
            if warn is not None:
                warn(f"no price table ({exc}); cost left out")
            prices = None
        budget = (Budget(Decimal(str(self.max_cost_usd)), prices)
                  if self.max_cost_usd is not None and prices is not None else None)
        return Policy(self.get_profile(), max_attempts=self.max_attempts,
                      poll_interval=self.poll_interval_seconds, wait_timeout=self.wait_timeout,
                      budget=budget, prices=prices, metadata=dict(metadata or {}),
                      extra_body=extra_body,
                      namespace=(self.namespace_for(store) if store is not None
                                 else self.namespace),
                      capacity_timeout=self.capacity_timeout_seconds,
                      delete_input_files=self.delete_input_files)

    # -- the embedded engine (batch_workflows.server.launch) ---------------------------------
    def engine_is_up(self) -> bool:
        return launch.engine_is_up(self.resolved_base_url)

    def ensure_local_engine(self) -> None:
        """Start ``batch-workflows serve`` in the background when nothing listens at base_url."""
        launch.ensure_engine(self.resolved_base_url, self.engine_data_dir,
                             self.resolved_api_key, self.engine_start_timeout_seconds)


def submission_pool(batch_resource_key: str) -> str:
    """The Dagster concurrency pool of the submissions through the resource bound under
    `batch_resource_key`: one pool per bound provider, e.g. ``batch_submit_batch``."""
    return f"batch_submit_{batch_resource_key}"
