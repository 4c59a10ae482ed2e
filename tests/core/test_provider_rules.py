"""Provider profiles, the failure table, namespaces and token-capped shards: plain data."""

from __future__ import annotations

import pytest

from batch_workflows import lifecycle as lc
from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle.failures import resubmits_request
from batch_workflows.pricing import estimate_input_tokens
from batch_workflows.profiles import EMBEDDINGS, MB, PROFILES, get_profile
from batch_workflows.requests import write_shards


def test_profiles_carry_the_published_limits():
    assert {"openai", "azure", "nebius", "groq", "deepinfra", "custom", "local"} <= set(PROFILES)
    azure, groq = get_profile("azure"), get_profile("groq")
    assert (azure.max_requests_per_file, azure.max_bytes_per_file) == (100_000, 200 * MB)
    # Azure's batch FAQ: embeddings models are not supported; the profile says why when asked.
    assert EMBEDDINGS not in azure.endpoints and "embeddings" in azure.endpoint_notes[EMBEDDINGS]
    assert groq.max_bytes_per_file == 100 * MB and groq.max_requests_per_file == 50_000
    nebius = get_profile("nebius")
    assert (nebius.max_requests_per_file, nebius.max_batches_in_flight) == (5_000_000, 500)
    assert get_profile("anthropic").max_requests_per_file == 100_000
    assert groq.check_window("7d") == "7d" and groq.check_window("24h") == "24h"
    with pytest.raises(ConfigurationError, match="'24h' to '7d'"):
        groq.check_window("8d")
    with pytest.raises(ConfigurationError, match="allowed '24h'"):
        get_profile("openai").check_window("48h")
    openai = get_profile("openai")
    assert openai.enqueued_token_limit("gpt-4o-mini") == 2_000_000
    assert openai.enqueued_token_limit("other") is None
    mine = openai.with_limits(default_enqueued_token_limit=10)
    assert mine.enqueued_token_limit("other") == 10
    assert all(p.one_model_per_file for p in PROFILES.values())


def test_one_table_decides_every_code():
    assert lc.decide("token_limit_exceeded") == "capacity"
    assert lc.decide("model_not_found") == "input"
    assert lc.decide("insufficient_quota") == "stop"
    assert lc.decide("never-heard-of-it") == "input"  # stop and say so rather than pay again
    failed = {"id": "b1", "status": "failed", "errors": {"data": [
        {"code": "token_limit_exceeded", "message": "full", "line": None},
        {"code": "invalid_json_line", "message": "bad", "line": 7, "param": None}]}}
    failure = lc.batch_failure(failed, shard=2)
    assert (failure.decision, failure.code, failure.line) == ("input", "invalid_json_line", 7)
    assert failure.describe() == "batch b1 failed (line 7 of shard 2): invalid_json_line: bad"
    assert lc.batch_failure({"id": "b", "status": "completed"}) is None
    expired = lc.batch_failure({"id": "b", "status": "expired",
                                "request_counts": {"completed": 0, "failed": 0}})
    assert expired.code == "batch_expired" and expired.decision == "resubmit"
    # A cancelled batch (at the provider, by the cancel command, by an interrupted run): its
    # unrun requests go into the next attempt, and the failure names its counts.
    cancelled = lc.batch_failure({"id": "b2", "status": "cancelled", "request_counts": {
        "total": 10, "completed": 4, "failed": 1}}, shard=0)
    assert (cancelled.decision, cancelled.code) == ("resubmit", "cancelled")
    assert "4 of 10 request(s) completed, 1 failed or not run" in cancelled.describe()
    for code in ("batch_cancelled", "batch_expired", "cancelled"):  # per request, too
        assert resubmits_request(code)


def test_namespace_comes_from_the_store_and_is_checked(tmp_path):
    a, b = lc.LocalFolder(tmp_path / "a"), lc.LocalFolder(tmp_path / "b")
    assert lc.default_namespace(a) != lc.default_namespace(b)
    assert lc.default_namespace(a) == lc.namespace_for(lc.base_uri(str(tmp_path / "a")))
    assert lc.base_uri("s3://bucket/pre/fix/") == "s3://bucket/pre/fix/"
    assert lc.resolve_namespace("prod", a) == "prod"
    with pytest.raises(ConfigurationError, match="namespace"):
        lc.check_namespace("has space")
    key = lc.submission_key("a", "p", EMBEDDINGS, "h", "m")
    assert lc.submission_key("a", "p", EMBEDDINGS, "h", "m", namespace="x") != key
    assert lc.submission_key("a", "p", EMBEDDINGS, "h", "m", namespace=None) == key


def test_shards_are_cut_to_a_token_cap(tmp_path):
    requests = [{"custom_id": f"r{i}", "method": "POST", "url": EMBEDDINGS,
                 "body": {"model": "m", "input": "x" * 40}} for i in range(50)]  # 10 tokens each
    manifest = write_shards(iter(requests), tmp_path, get_profile("local"), endpoint=EMBEDDINGS,
                            max_tokens_per_file=35)
    assert [s.lines for s in manifest.shards] == [3] * 16 + [2]
    assert all(estimate_input_tokens(s.path) <= 35 for s in manifest.shards)
