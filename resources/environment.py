"""The code location's resources from the environment: the one place that reads ``BATCH_*``,
``BATCH_ARTIFACTS_URI``, S3's and ``QDRANT_*`` variables.

=========================  ==============================================================
``BATCH_PROVIDER``         a provider profile: ``local`` (default), ``openai``, ``azure``,
                           ``nebius``, ``groq``, ``deepinfra``, ``anthropic`` or ``custom``
``BATCH_NAMESPACE``        this deployment's part of every batch's identity; default: a digest
                           of the artifact store's base URI
``BATCH_BASE_URL``         the API root including ``/v1``; default: the profile's
``BATCH_API_KEY``          bearer key (read at run time through ``EnvVar``; never logged)
``BATCH_BLOCKING``         ``1``/``0``: wait inside the run; default: only for ``local``
``BATCH_MAX_COST_USD``     refuse a submission whose estimate is above this
``BATCH_MAX_ATTEMPTS``     attempts per request (first run + resubmissions), default 3
``BATCH_POLL_INTERVAL``    seconds between polls, default 2 (local) / 60
``BATCH_PRICE_FILE``       a prices CSV replacing the packaged one
``BATCH_ENGINE_DATA_DIR``  where the embedded local engine keeps its state (``.data/engine``)
``BATCH_STATE_DIR``        ``anthropic``, direct use without an artifact store: the create intents
                           (``.data/anthropic``); runs keep them in the artifact store
``BATCH_ARTIFACTS_URI``    artifacts: a folder (``.data/artifacts``) or ``s3://bucket/prefix``
=========================  ==============================================================

With ``BATCH_PROVIDER=local`` (the default) the first use starts the local engine when nothing
answers at its URL (``start_local_engine=True``).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from batch_workflows.dagster import ArtifactStore, BatchResource, QdrantResource
from batch_workflows.errors import ConfigurationError
from batch_workflows.flows.embeddings.vectors import API_KEY_VAR, QdrantSettings
from batch_workflows.s3 import is_s3, s3_endpoint_from_env

DEFAULT_ARTIFACTS_URI = ".data/artifacts"


def build_resources() -> dict[str, object]:
    """The resources every flow of the code location may use, configured from the environment."""
    return {
        "batch": batch_resource_from_env(),
        "artifacts": artifact_store_from_env(),
        "qdrant": qdrant_from_env(),
    }


def provider_from_env() -> str:
    """BATCH_PROVIDER, normalised (``local`` when unset)."""
    return os.environ.get("BATCH_PROVIDER", "local").strip().lower() or "local"


def batch_resource_from_env(**overrides: Any) -> BatchResource:
    """A BatchResource from ``BATCH_*`` variables (see the module doc); `overrides` win."""
    env = os.environ
    provider = provider_from_env()
    settings: dict[str, Any] = {"provider": provider, "start_local_engine": provider == "local"}
    if env.get("BATCH_BASE_URL"):
        settings["base_url"] = env["BATCH_BASE_URL"]
    if env.get("BATCH_API_KEY"):
        settings["api_key"] = EnvVar("BATCH_API_KEY")
    if env.get("BATCH_BLOCKING"):
        settings["blocking"] = env["BATCH_BLOCKING"].strip().lower() in ("1", "true", "yes")
    if env.get("BATCH_MAX_COST_USD"):
        settings["max_cost_usd"] = _env_number("BATCH_MAX_COST_USD", float, minimum=0)
    if env.get("BATCH_MAX_ATTEMPTS"):
        settings["max_attempts"] = _env_number("BATCH_MAX_ATTEMPTS", int, minimum=1)
    settings["poll_interval_seconds"] = (
        _env_number("BATCH_POLL_INTERVAL", float, minimum=0) if env.get("BATCH_POLL_INTERVAL")
        else 2.0 if provider == "local" else 60.0)
    if env.get("BATCH_PRICE_FILE"):
        settings["price_file"] = env["BATCH_PRICE_FILE"]
    if env.get("BATCH_NAMESPACE"):
        settings["namespace"] = env["BATCH_NAMESPACE"].strip()
    if env.get("BATCH_ENGINE_DATA_DIR"):
        settings["engine_data_dir"] = env["BATCH_ENGINE_DATA_DIR"]
    if env.get("BATCH_STATE_DIR"):
        settings["state_dir"] = env["BATCH_STATE_DIR"]
    settings.update(overrides)
    return BatchResource(**settings)


def artifact_store_from_env(default_base_uri: str = DEFAULT_ARTIFACTS_URI) -> ArtifactStore:
    """``BATCH_ARTIFACTS_URI`` and, for S3, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
    ``AWS_REGION``; credentials stay EnvVars (resolved at run time)."""
    base = os.environ.get("BATCH_ARTIFACTS_URI") or default_base_uri
    settings: dict[str, Any] = {"base_uri": base}
    if is_s3(base):
        endpoint = s3_endpoint_from_env()
        if endpoint:
            settings["s3_endpoint_url"] = endpoint
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            settings["s3_region_name"] = region
        for field, var in (("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                           ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                           ("aws_session_token", "AWS_SESSION_TOKEN")):
            if os.environ.get(var):
                settings[field] = EnvVar(var)
    return ArtifactStore(**settings)


def qdrant_from_env() -> QdrantResource:
    """The environment as `batch-workflows search` reads it (`QdrantSettings.from_env`), with
    the key kept as ``EnvVar("QDRANT_API_KEY")``: Dagster resolves it at run time and never
    shows its value."""
    env = QdrantSettings.from_env()
    return QdrantResource(path=env.path, url=env.url,
                          api_key=EnvVar(API_KEY_VAR) if env.api_key else None,
                          collection=env.collection)


def _env_number(name: str, kind: type, *, minimum: float) -> Any:
    """A numeric environment variable; ConfigurationError naming it when it is not one."""
    text = os.environ[name].strip()
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum:  # value != value: NaN
        raise ConfigurationError(
            f"{name}={text!r}: expected a {kind.__name__} of at least {minimum:g}")
    return value
