"""UpstreamBackend against a real loopback HTTP endpoint that rate-limits and fails."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from support.upstream_server import RateLimitedEndpoint

from batch_workflows.backends.base import Backend
from batch_workflows.backends.upstream import RateLimiter, UpstreamBackend, join_url, request_tokens
from batch_workflows.client import parse_retry_after

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"
KEY = "sk-test-secret-123456"


def _chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 5}


@pytest.fixture
def backend_factory():
    made: list[UpstreamBackend] = []

    def make(url: str, endpoint: str = CHAT, **kw) -> UpstreamBackend:
        kw.setdefault("backoff_base", 0.05)
        b = UpstreamBackend(url, endpoint, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_helpers():
    assert join_url("http://h:1/v1", CHAT) == "http://h:1/v1/chat/completions"
    assert join_url("http://h:1/v1/", EMB) == "http://h:1/v1/embeddings"
    assert join_url("http://h:1/api", EMB) == "http://h:1/api/v1/embeddings"
    assert request_tokens(_chat("x" * 400)) == 105  # chars / 4 + max_tokens
    assert request_tokens({"input": ["abcd" * 10, "abcd"]}) == 11
    assert request_tokens({"input": [[1, 2, 3], "abcd"]}) == 4  # token ids count one each
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "Retry-After": "1"})) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(httpx.Headers({})) is None


def test_limiter_spaces_requests_evenly():
    lim = RateLimiter(rpm=600)
    waits = [lim.reserve() for _ in range(5)]
    assert waits[0] == pytest.approx(0, abs=0.01)
    assert waits[4] == pytest.approx(0.4, abs=0.02)
    tok = RateLimiter(tpm=6000)  # 100 tokens per second
    tok.reserve(50)
    assert tok.reserve(10) == pytest.approx(0.5, abs=0.02)


def test_everything_completes_in_order_at_the_set_rate(backend_factory):
    n, rpm = 80, 1200  # 20 per second: ~4 s
    with RateLimitedEndpoint(rpm=rpm, burst=3, fail_rate=0.1, retry_after="0.5") as up:
        backend = backend_factory(up.base_url, CHAT, api_key=KEY, rpm=rpm, concurrency=8)
        assert isinstance(backend, Backend) and backend.model_ids == []
        start = time.monotonic()
        results = backend.run([_chat(f"request {i}") for i in range(n)])
        elapsed = time.monotonic() - start
    assert len(results) == n
    assert [r.status_code for r in results] == [200] * n
    assert [r.body["choices"][0]["message"]["content"] for r in results] == [
        f"echo: request {i}" for i in range(n)
    ]
    assert up.count(200) == n  # nothing lost, nothing sent twice after success
    assert up.count(500) > 0  # flaky answers really happened and were retried
    attempts = len(up.log)
    assert backend.stats["attempts"] == attempts
    # Attempts never outran the configured rate (one bucket's burst of slack).
    assert attempts <= rpm / 60 * elapsed + 3
    assert up.count(429) <= n * 0.1
    assert up.auth_seen == {f"Bearer {KEY}"}


def test_retry_after_is_honoured(backend_factory):
    with RateLimitedEndpoint(rpm=120, burst=1, retry_after="1") as up:  # 2 per second
        backend = backend_factory(up.base_url, EMB, concurrency=4, max_retries=20)
        bodies = [{"model": "m", "input": f"text {i}"} for i in range(5)]
        results = backend.run(bodies)
    assert all(r.status_code == 200 for r in results)
    assert up.count(429) >= 1
    # Per request, the attempt after a 429 came at least Retry-After (1 s) later.
    by_text: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (arrival, status), text in zip(up.log, up.texts, strict=True):
        by_text[text].append((arrival, status))
    gaps = [
        b[0] - a[0]
        for attempts in by_text.values()
        for a, b in zip(attempts, attempts[1:], strict=False)
        if a[1] == 429
    ]
    assert gaps and min(gaps) >= 0.99


def test_final_failures_carry_the_upstream_status_and_body(backend_factory):
    with RateLimitedEndpoint() as up:
        backend = backend_factory(up.base_url, CHAT, api_key=KEY, max_retries=2)
        ok, unavailable, bad = backend.run(
            [_chat("fine"), _chat("status:503"), _chat("status:400")]
        )
        texts = list(up.texts)
    assert ok.status_code == 200
    assert unavailable.status_code == 503
    assert unavailable.body["error"]["message"] == "Forced failure 503."
    assert unavailable.body["error"]["code"] == "forced"
    assert texts.count("status:503") == 3  # 1 try + max_retries
    assert bad.status_code == 400 and texts.count("status:400") == 1  # 4xx is final at once
    assert set(bad.body["error"]) == {"message", "type", "param", "code"}
    assert backend.stats["failed"] == 2


def test_wrong_key_is_a_401_result_without_the_key(backend_factory):
    with RateLimitedEndpoint(api_key="the-right-key") as up:
        backend = backend_factory(up.base_url, CHAT, api_key=KEY)
        (res,) = backend.run([_chat("hi")])
    assert res.status_code == 401
    assert res.body["error"]["code"] == "invalid_api_key"
    assert KEY not in json.dumps(res.body) and KEY not in repr(backend)


def test_unreachable_upstream_is_a_502_result(backend_factory):
    with RateLimitedEndpoint() as up:
        url = up.base_url
    backend = backend_factory(url, CHAT, api_key=KEY, max_retries=1)
    (res,) = backend.run([_chat("hi")])
    assert res.status_code == 502 and res.body["error"]["code"] == "upstream_unavailable"
    assert backend.stats["attempts"] == 2
    assert KEY not in json.dumps(res.body)


def test_timeouts_are_retried_then_a_504_result(backend_factory):
    with RateLimitedEndpoint(latency=0.5) as up:
        backend = backend_factory(up.base_url, CHAT, timeout=0.2, max_retries=1)
        (res,) = backend.run([_chat("slow")])
    assert res.status_code == 504 and res.body["error"]["code"] == "upstream_timeout"
    assert backend.stats["timeouts"] == 2


def test_tokens_per_minute_limit_paces_requests(backend_factory):
    body = _chat("x" * 396)  # 99 + 5 = 104 estimated tokens
    with RateLimitedEndpoint() as up:
        backend = backend_factory(
            up.base_url, CHAT, tpm=60 * 1040, concurrency=8
        )  # 10 such per second
        start = time.monotonic()
        results = backend.run([body] * 8)
        elapsed = time.monotonic() - start
    assert all(r.status_code == 200 for r in results)
    assert 0.65 <= elapsed < 3


def test_concurrent_run_calls_share_one_limiter(backend_factory):
    import threading

    with RateLimitedEndpoint(rpm=1200, burst=2) as up:
        backend = backend_factory(up.base_url, CHAT, rpm=1200, concurrency=4)
        out: list = []
        threads = [
            threading.Thread(
                target=lambda k=k: out.extend(backend.run([_chat(f"{k}-{i}") for i in range(10)]))
            )
            for k in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(out) == 30 and all(r.status_code == 200 for r in out)
    assert up.count(429) <= 3


def test_should_stop_sends_nothing_more_and_keeps_what_was_paid_for(backend_factory):
    with RateLimitedEndpoint(rpm=600, burst=1) as up:  # 10 per second
        backend = backend_factory(up.base_url, CHAT, rpm=600, concurrency=2)
        start = time.monotonic()
        results = backend.run(
            [_chat(f"r{i}") for i in range(200)],
            should_stop=lambda: time.monotonic() - start > 0.5,
        )
    sent = [r for r in results if r is not None]
    assert 1 <= len(sent) < 200 and all(r.status_code == 200 for r in sent)
    assert up.count(200) == len(sent)  # every answer the upstream gave is kept


class _EchoAuthHandler(BaseHTTPRequestHandler):
    """Answers 400 with a plain-text body that echoes the Authorization header after padding,
    so the key straddles the excerpt's 500-character cut."""

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = ("x" * 480 + " " + str(self.headers.get("Authorization"))).encode()
        self.send_response(400)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_key_echoed_across_the_excerpt_cut_is_redacted(backend_factory):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuthHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        backend = backend_factory(f"http://127.0.0.1:{httpd.server_address[1]}/v1", CHAT,
                                  api_key=KEY)
        (res,) = backend.run([_chat("hi")])
    finally:
        httpd.shutdown()
        httpd.server_close()
    message = res.body["error"]["message"]
    assert res.status_code == 400 and "Bearer ***" in message
    # Cutting before redacting would have kept "sk-test-secr", a prefix no longer matching.
    assert KEY[:4] not in message and KEY not in json.dumps(res.body)
