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
from batch_workflows.lifecycle import Budget, Policy
from batch_workflows.pricing import PriceTable
from batch_workflows.profiles import PROFILES, ProviderProfile, get_profile, resolve_base_url
from batch_workflows.server import launch
from batch_workflows.wire import parse_duration

PROVIDERS = ("local", "nebius", "openai", "custom")
DEFAULT_ENGINE_DATA_DIR = ".data/engine"


class BatchResource(ConfigurableResource):
    """Access to one OpenAI-compatible Batch API plus the lifecycle's policies."""

    provider: str = Field(description="local | nebius | openai | custom")
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
    request_timeout_seconds: float = Field(default=60.0)
    max_retries: int = Field(default=6, description="HTTP retries per call (429/5xx/resets).")

    # -- derived settings --------------------------------------------------------------------
    def get_profile(self) -> ProviderProfile:
        """The provider profile with this resource's overrides applied."""
        if self.provider not in PROVIDERS:
            raise ConfigurationError(
                f"unknown provider {self.provider!r}; expected one of {', '.join(PROVIDERS)}")
        if self.provider == "custom":
            if not self.base_url:
                raise ConfigurationError("provider 'custom' needs base_url")
            base = PROFILES["openai"].with_limits(name="custom", base_url=self.base_url)
        else:
            base = get_profile(self.provider)
        changes: dict[str, Any] = {"completion_window": self.completion_window}
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
        if self.provider == "custom" and not self.base_url:
            raise ConfigurationError("provider 'custom' needs base_url")
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
    def get_client(self) -> BatchClient:
        """A BatchClient for the provider (starting the embedded engine first when needed)."""
        if self.provider == "local" and self.start_local_engine:
            self.ensure_local_engine()
        return BatchClient(self.resolved_base_url, api_key=self.resolved_api_key,
                           timeout=self.request_timeout_seconds, max_retries=self.max_retries)

    def price_table(self) -> PriceTable:
        return PriceTable.load(self.price_file) if self.price_file else PriceTable.default()

    def policy(self, *, metadata: Mapping[str, str] | None = None,
               extra_body: Mapping[str, Any] | None = None,
               warn: Callable[[str], Any] | None = None) -> Policy:
        """The lifecycle's policy from these settings: limits, attempts, patience, budget, prices.

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
                      extra_body=extra_body)

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
