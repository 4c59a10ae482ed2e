"""Retry timing: Retry-After parsing and the jittered exponential backoff."""

from __future__ import annotations

import email.utils

import pytest

from batch_workflows.client import Backoff, BatchClient, parse_retry_after


def test_retry_after_seconds_date_and_ms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({"retry-after": "-4"}) == 0.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(7.0)
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    # OpenAI's millisecond header wins over the coarse one.
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(initial=1.0, multiplier=2.0, maximum=8.0, max_retry_after=30.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, so clients retrying together spread out
    assert backoff.delay(0, retry_after=12.0) == 12.0  # the server's word is honoured
    assert backoff.delay(5, retry_after=600.0) == 30.0  # but bounded


def test_client_repr_and_settings_hide_the_key() -> None:
    key = "sk-test-SECRET-123456"
    client = BatchClient("http://127.0.0.1:9/v1/", api_key=key)
    try:
        assert key not in repr(client)
        assert "***" in repr(client)
        assert client.base_url == "http://127.0.0.1:9/v1"
        with pytest.raises(ValueError):
            BatchClient("http://x", max_retries=-1)
    finally:
        client.close()
