"""BatchResource: the code location's settings from the environment, profiles, and the
embedded engine start (only when asked for)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from dagster import EnvVar
from support.server import free_port

from batch_workflows.dagster import BatchResource
from batch_workflows.errors import ConfigurationError
from resources import batch_resource_from_env


def test_from_env_defaults_and_overrides(monkeypatch):
    for var in ("BATCH_PROVIDER", "BATCH_BASE_URL", "BATCH_API_KEY", "BATCH_BLOCKING",
                "BATCH_MAX_COST_USD", "BATCH_MAX_ATTEMPTS", "BATCH_POLL_INTERVAL"):
        monkeypatch.delenv(var, raising=False)
    local = batch_resource_from_env()
    assert local.provider == "local" and local.is_blocking
    assert local.resolved_base_url == "http://127.0.0.1:8765/v1"
    assert local.api_key is None

    monkeypatch.setenv("BATCH_PROVIDER", "openai")
    monkeypatch.setenv("BATCH_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("BATCH_MAX_COST_USD", "12.5")
    monkeypatch.setenv("BATCH_MAX_ATTEMPTS", "5")
    remote = batch_resource_from_env()
    assert remote.provider == "openai" and not remote.is_blocking
    assert remote.max_cost_usd == 12.5 and remote.max_attempts == 5
    assert remote.get_profile().max_requests_per_file == 50_000
    assert not remote.start_local_engine and local.start_local_engine
    monkeypatch.setenv("BATCH_BLOCKING", "1")
    assert batch_resource_from_env().is_blocking


def test_custom_provider_needs_a_base_url_and_takes_limit_overrides():
    with pytest.raises(ConfigurationError, match="base_url"):
        BatchResource(provider="custom").get_profile()
    with pytest.raises(ConfigurationError, match="unknown provider"):
        BatchResource(provider="nope").get_profile()
    custom = BatchResource(provider="custom", base_url="http://10.0.0.1:9000/v1",
                           max_requests_per_file=7, max_in_flight_batches=3)
    profile = custom.get_profile()
    assert profile.name == "custom" and profile.max_requests_per_file == 7
    assert profile.max_batches_in_flight == 3
    assert custom.resolved_base_url == "http://10.0.0.1:9000/v1"
    with pytest.raises(ConfigurationError, match="base_url"):
        _ = BatchResource(provider="custom").resolved_base_url


def test_api_key_from_envvar_is_not_shown(monkeypatch):
    monkeypatch.setenv("BATCH_API_KEY", "sk-very-secret")
    resource = BatchResource(provider="openai", api_key=EnvVar("BATCH_API_KEY"))
    client = resource.get_client()
    try:
        assert "sk-very-secret" not in repr(client)
    finally:
        client.close()


def test_the_local_engine_is_started_only_when_asked_for(tmp_path):
    port = free_port()
    resource = BatchResource(provider="local", base_url=f"http://127.0.0.1:{port}/v1",
                             engine_data_dir=str(tmp_path / "engine"))
    assert resource.start_local_engine is False
    with resource.get_client():
        pass
    assert not (tmp_path / "engine").exists() and not resource.engine_is_up()


def test_local_provider_starts_the_embedded_engine_when_nothing_listens(tmp_path):
    port = free_port()
    resource = BatchResource(provider="local", base_url=f"http://127.0.0.1:{port}/v1",
                             engine_data_dir=str(tmp_path / "engine"), start_local_engine=True)
    assert not resource.engine_is_up()
    pid = None
    try:
        with resource.get_client() as client:
            pid = int((tmp_path / "engine" / "engine.pid").read_text())
            assert resource.engine_is_up()
            assert list(client.list_batches()) == []
        assert (tmp_path / "engine" / "engine.log").exists()
        # Already up: a second resource re-uses it instead of starting another.
        BatchResource(provider="local", base_url=f"http://127.0.0.1:{port}/v1",
                      engine_data_dir=str(tmp_path / "engine"),
                      start_local_engine=True).ensure_local_engine()
        assert int((tmp_path / "engine" / "engine.pid").read_text()) == pid
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not resource.engine_is_up():
                    break
                time.sleep(0.1)


def test_no_engine_is_started_for_a_remote_address(tmp_path):
    resource = BatchResource(provider="local", base_url="http://10.255.255.1:1/v1",
                             engine_data_dir=str(tmp_path / "engine"))
    try:
        resource.ensure_local_engine()  # something answers there (e.g. a sandbox's proxy)
    except ConfigurationError as exc:  # nothing answers: a clear error, no engine
        assert "loopback" in str(exc)
    assert not (tmp_path / "engine" / "engine.pid").exists()


def test_a_listening_but_failing_address_is_left_alone(server, tmp_path):
    from support.proxy import FaultProxy

    with FaultProxy(server.base_url) as proxy:
        proxy.add("500", path=r"/health", times=None)  # answers, badly: not "nothing listening"
        resource = BatchResource(provider="local", base_url=proxy.base_url,
                                 engine_data_dir=str(tmp_path / "engine"))
        with resource.get_client() as client:
            assert isinstance(list(client.list_batches(limit=1)), list)
    assert not (tmp_path / "engine" / "engine.pid").exists()


def test_profiles_by_name_quota_and_namespace_from_the_artifact_store(tmp_path):
    from batch_workflows import lifecycle as lc
    from batch_workflows.dagster import ArtifactStore

    groq = BatchResource(provider="groq", completion_window="7d").get_profile()
    assert groq.name == "groq" and groq.completion_window == "7d"
    with pytest.raises(ConfigurationError, match="completion_window '7d'"):
        BatchResource(provider="openai", completion_window="7d").get_profile()
    with pytest.raises(ConfigurationError, match="base_url"):
        BatchResource(provider="azure").get_profile()
    mine = BatchResource(provider="openai", enqueued_token_limit=90_000,
                         enqueued_token_limits={"gpt-4.1": 5_000})
    assert mine.get_profile().enqueued_token_limit("gpt-4o-mini") == 90_000  # my tier wins
    assert mine.get_profile().enqueued_token_limit("gpt-4.1") == 5_000
    stores = [ArtifactStore(base_uri=str(tmp_path / d)) for d in ("staging", "prod")]
    batch = BatchResource(provider="local")
    assert batch.namespace_for(stores[0]) != batch.namespace_for(stores[1])
    assert batch.namespace_for(stores[0]) == lc.default_namespace(lc.LocalFolder(tmp_path / "staging"))
    assert batch.policy(store=stores[0]).namespace == batch.namespace_for(stores[0])
    assert BatchResource(provider="local", namespace="prod").policy(
        store=stores[0]).namespace == "prod"
    assert not BatchResource(provider="local", delete_input_files=False).policy().delete_input_files
