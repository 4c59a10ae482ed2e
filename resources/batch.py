"""The batch resource: which Batch API to talk to, with which limits, budget and patience.

Settings come from the environment in the code location (``BatchResource.from_env``):

=======================  ==============================================================
``BATCH_PROVIDER``        ``local`` (default), ``nebius``, ``openai`` or ``custom``
``BATCH_BASE_URL``        the API root including ``/v1``; default: the profile's
``BATCH_API_KEY``         bearer key (read at run time through ``EnvVar``; never logged)
``BATCH_BLOCKING``        ``1``/``0``: wait inside the run; default: only for ``local``
``BATCH_MAX_COST_USD``    refuse a submission whose estimate is above this
``BATCH_MAX_ATTEMPTS``    attempts per request (first run + resubmissions), default 3
``BATCH_POLL_INTERVAL``   seconds between polls, default 2 (local) / 60
``BATCH_PRICE_FILE``      a prices CSV replacing the packaged one
``BATCH_ENGINE_DATA_DIR`` where the embedded local engine keeps its state (``.data/engine``)
=======================  ==============================================================

**The embedded engine.** With ``provider="local"`` and nothing answering at ``base_url``, the
first use starts ``batch-workflows serve`` for you as a detached background process on that
host and port, with its SQLite database, uploaded files and results under ``engine_data_dir``
(``.data/engine`` in the working directory by default) and its log in
``<engine_data_dir>/engine.log``. It keeps running after Dagster exits (batches outlive runs,
as at a real provider); stop it with the pid in ``<engine_data_dir>/engine.pid``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from batch_workflows.client import BatchClient
from batch_workflows.errors import BudgetExceededError, ConfigurationError
from batch_workflows.profiles import PROFILES, ProviderProfile, get_profile, resolve_base_url

PROVIDERS = ("local", "nebius", "openai", "custom")
DEFAULT_ENGINE_DATA_DIR = ".data/engine"
# Engines started by this process: kept referenced so that they are never reaped as garbage.
_STARTED_ENGINES: list[subprocess.Popen] = []


class BatchResource(ConfigurableResource):
    """Access to one OpenAI-compatible Batch API plus the lifecycle's policies."""

    provider: str = Field(default="local", description="local | nebius | openai | custom")
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
        description="Where the embedded local engine keeps its state (provider=local).")
    start_local_engine: bool = Field(
        default=True, description="Start the embedded engine when nothing listens (local only).")
    engine_start_timeout_seconds: float = Field(default=300.0)
    request_timeout_seconds: float = Field(default=60.0)
    max_retries: int = Field(default=6, description="HTTP retries per call (429/5xx/resets).")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_env(cls, **overrides: Any) -> BatchResource:
        """Settings from ``BATCH_*`` variables (see the module doc); `overrides` win."""
        env = os.environ
        provider = provider_from_env()
        settings: dict[str, Any] = {"provider": provider}
        if env.get("BATCH_BASE_URL"):
            settings["base_url"] = env["BATCH_BASE_URL"]
        if env.get("BATCH_API_KEY"):
            settings["api_key"] = EnvVar("BATCH_API_KEY")
        if env.get("BATCH_BLOCKING"):
            settings["blocking"] = env["BATCH_BLOCKING"].strip().lower() in ("1", "true", "yes")
        if env.get("BATCH_MAX_COST_USD"):
            settings["max_cost_usd"] = float(env["BATCH_MAX_COST_USD"])
        if env.get("BATCH_MAX_ATTEMPTS"):
            settings["max_attempts"] = int(env["BATCH_MAX_ATTEMPTS"])
        settings["poll_interval_seconds"] = float(
            env.get("BATCH_POLL_INTERVAL") or (2.0 if provider == "local" else 60.0))
        if env.get("BATCH_PRICE_FILE"):
            settings["price_file"] = env["BATCH_PRICE_FILE"]
        if env.get("BATCH_ENGINE_DATA_DIR"):
            settings["engine_data_dir"] = env["BATCH_ENGINE_DATA_DIR"]
        settings.update(overrides)
        return cls(**settings)

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
        from batch_workflows.lifecycle import parse_duration

        if self.wait_timeout_seconds is not None:
            return self.wait_timeout_seconds
        return parse_duration(self.completion_window) + 3600.0

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool this resource's submissions belong in.

        The lifecycle assets declare their pool when they are defined (``default_pool()``, from
        the same BATCH_PROVIDER that ``from_env`` reads) and check it against this at run time.
        """
        return pool_name(self.provider)

    # -- clients -----------------------------------------------------------------------------
    def get_client(self) -> BatchClient:
        """A BatchClient for the provider (starting the embedded engine first when needed)."""
        if self.provider == "local" and self.start_local_engine:
            self.ensure_local_engine()
        return BatchClient(self.resolved_base_url, api_key=self.resolved_api_key,
                           timeout=self.request_timeout_seconds, max_retries=self.max_retries)

    def price_table(self) -> Any:
        from batch_workflows.pricing import PriceTable

        return PriceTable.load(self.price_file) if self.price_file else PriceTable.default()

    def check_budget(self, request_files: list[str]) -> Decimal | None:
        """The estimated cost of submitting `request_files`; BudgetExceededError above the cap."""
        if self.max_cost_usd is None:
            return None
        from batch_workflows.pricing import estimate_cost

        estimate = estimate_cost(request_files, self.price_table())
        usd = Decimal(str(estimate.usd))
        if usd > Decimal(str(self.max_cost_usd)):
            raise BudgetExceededError(
                f"estimated cost ${usd} ({estimate.input_tokens} input, {estimate.output_tokens} "
                f"output tokens at the batch rate) is above max_cost_usd=${self.max_cost_usd}; "
                "nothing was submitted and nothing was cancelled")
        return usd

    # -- the embedded engine -----------------------------------------------------------------
    def _health_url(self) -> str:
        parts = urlsplit(self.resolved_base_url)
        return f"{parts.scheme}://{parts.netloc}/health"

    def engine_is_up(self) -> bool:
        try:
            return httpx.get(self._health_url(), timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _listening(self) -> bool:
        """Whether anything accepts connections at base_url (an engine, a proxy, ...)."""
        parts = urlsplit(self.resolved_base_url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                          timeout=2.0):
                return True
        except OSError:
            return False

    def ensure_local_engine(self) -> None:
        """Start ``batch-workflows serve`` in the background when nothing listens at base_url.

        Something that listens but answers badly (a proxy, an engine still starting) is left
        alone: the client's retries deal with it.
        """
        parts = urlsplit(self.resolved_base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if self._listening():
            return
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigurationError(
                f"nothing answers at {self.resolved_base_url} and it is not a loopback address; "
                "the embedded engine only starts on this machine")
        data_dir = Path(self.engine_data_dir).expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(data_dir / "engine.lock"):
            if self._listening():  # someone else started it while we waited for the lock
                self._wait_for_health(None, data_dir)
                return
            command = [sys.executable, "-m", "batch_workflows.cli", "serve", "--host", host,
                       "--port", str(port), "--data-dir", str(data_dir)]
            env = dict(os.environ)
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
            if self.resolved_api_key:
                env["BATCH_SERVER_API_KEY"] = self.resolved_api_key
            with open(data_dir / "engine.log", "ab") as log:
                process = subprocess.Popen(  # detached: batches outlive the Dagster run
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True)
            _STARTED_ENGINES.append(process)
            (data_dir / "engine.pid").write_text(str(process.pid))
            self._wait_for_health(process, data_dir)

    def _wait_for_health(self, process: subprocess.Popen | None, data_dir: Path) -> None:
        deadline = time.monotonic() + self.engine_start_timeout_seconds
        while time.monotonic() < deadline:
            if self.engine_is_up():
                return
            if process is not None and process.poll() is not None:
                raise ConfigurationError(
                    f"the embedded batch engine exited with code {process.returncode}; "
                    f"see {data_dir / 'engine.log'}")
            time.sleep(0.25)
        raise ConfigurationError(
            f"the embedded batch engine did not answer at {self._health_url()} within "
            f"{self.engine_start_timeout_seconds:g}s; see {data_dir / 'engine.log'}")


def pool_name(provider: str) -> str:
    """Concurrency pool of a provider's submissions, e.g. ``batch_submit_nebius``."""
    return f"batch_submit_{provider}"


def provider_from_env() -> str:
    """BATCH_PROVIDER, normalised (``local`` when unset): what ``from_env`` configures."""
    return os.environ.get("BATCH_PROVIDER", "local").strip().lower() or "local"


def default_pool() -> str:
    """The pool of the provider the code location is configured for (see ``from_env``)."""
    return pool_name(provider_from_env())


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
