"""Forward requests to a real-time OpenAI-compatible endpoint at set request/token rates.

This is the queue-and-retry logic that a real-time API otherwise leaves to its users:

* requests-per-minute and tokens-per-minute limits, paced by a GCRA limiter (evenly spaced
  slots, no bursts) shared by every run() call of the backend;
* at most `concurrency` requests in flight; one event loop in a background thread keeps the
  pipeline full across the whole list of bodies given to run();
* retries with jittered exponential backoff on 408/409/429/5xx, timeouts and connection errors,
  honouring `Retry-After` / `retry-after-ms`; at most `max_retries` retries per request;
* a request that still fails becomes a result with the upstream status and error body (502 for
  connection errors, 504 for timeouts), so the server writes it as an error line.

Token estimate for the TPM limit: batch_workflows.pricing.estimate_tokens (characters / 4 of
the text, plus max_tokens × n for chat). Retry-After parsing and the backoff curve are the
client's (batch_workflows.client), so both sides of the server retry alike.
The API key is sent only in the Authorization header; it is never logged and is scrubbed from
any upstream text we pass on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from typing import Any

import httpx

from batch_workflows.backends.base import BackendResult, ResultSink, StopCheck, error_body, never
from batch_workflows.client import Backoff, parse_retry_after
from batch_workflows.pricing import estimate_tokens
from batch_workflows.redaction import excerpt, redact

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})
_EXCERPT = 500


def join_url(base_url: str, endpoint: str) -> str:
    """base_url + endpoint, without doubling "/v1" ("http://h/v1" + "/v1/embeddings")."""
    base = base_url.rstrip("/")
    if base.endswith("/v1") and endpoint.startswith("/v1/"):
        return base + endpoint[3:]
    return base + endpoint


def request_tokens(body: Any) -> int:
    """Tokens a request counts against the TPM limit: prompt estimate plus the output cap."""
    if not isinstance(body, dict):
        return 1
    return max(1, sum(estimate_tokens(body, default_max_tokens=0)))


class RateLimiter:
    """GCRA pacing on requests per minute and tokens per minute (None = unlimited).

    Each acquire reserves the next free slot, so waiters are served in order and the achieved
    rate equals the configured one as long as enough requests are in flight.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self.rpm, self.tpm = rpm, tpm
        self._req_at = 0.0  # earliest start of the next request
        self._tok_at = 0.0  # earliest start allowed by the token budget

    def reserve(self, tokens: int = 1) -> float:
        """Reserve a slot; returns how many seconds to wait before sending."""
        now = time.monotonic()
        start = max(now, self._req_at, self._tok_at)
        if self.rpm:
            self._req_at = start + 60.0 / self.rpm
        if self.tpm:
            # A request larger than a minute's budget still goes, then holds the next ones back.
            self._tok_at = start + 60.0 * tokens / self.tpm
        return start - now

    async def acquire(self, tokens: int = 1) -> None:
        delay = self.reserve(tokens)
        if delay > 0:
            await asyncio.sleep(delay)


class UpstreamBackend:
    """Backend that forwards each body to `base_url` + `endpoint`."""

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        api_key: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        concurrency: int = 16,
        max_retries: int = 6,
        timeout: float = 60.0,
        *,
        model_ids: list[str] | None = None,
        max_batch: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self.endpoint = endpoint
        self.url = join_url(base_url, endpoint)
        self.model_ids = list(model_ids or [])  # empty: any model is passed through
        self.rpm, self.tpm = rpm, tpm
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout = timeout
        # A longer Retry-After is capped (Backoff.max_retry_after) so a run cannot hang for hours.
        self.backoff = Backoff(initial=backoff_base, maximum=backoff_max)
        # About 30 s of work per call: the pipeline drains once per call, so calls must be long.
        if max_batch is None:
            max_batch = max(self.concurrency * 8, (rpm or 0) // 2)
            max_batch = min(max_batch, 10_000)
        self.max_batch = max_batch
        self.limiter = RateLimiter(rpm, tpm)
        self.stats: Counter[str] = Counter()
        self.__api_key = api_key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UpstreamBackend(url={self.url!r}, rpm={self.rpm}, tpm={self.tpm}, concurrency={self.concurrency})"

    # -- event loop ----------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="upstream-backend", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        return headers

    def _get_client(self) -> httpx.AsyncClient:
        # Created inside the loop thread: the client belongs to that loop.
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers(),
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                limits=httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                ),
            )
        return self._client

    def close(self) -> None:
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if self._client is not None:
            client, self._client = self._client, None
            try:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=10)
            except (TimeoutError, RuntimeError) as exc:
                log.warning("closing the upstream client failed: %s", type(exc).__name__)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()

    # -- requests ------------------------------------------------------------------------------

    def run(self, bodies: list[dict], should_stop: StopCheck = never,
            on_result: ResultSink | None = None) -> list[BackendResult | None]:
        # on_result is not told: answers arrive on the event loop, which must not wait on the
        # server's commits (fsync) between sends; the returned list reports them.
        if not bodies:
            return []
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(self._run_all(bodies, should_stop), loop).result()

    async def _run_all(
        self, bodies: list[dict], should_stop: StopCheck
    ) -> list[BackendResult | None]:
        client = self._get_client()
        results: list[BackendResult | None] = [None] * len(bodies)
        queue = iter(range(len(bodies)))

        async def worker() -> None:
            for i in queue:  # a shared iterator: each index is taken by one worker
                if should_stop():
                    return  # requests in flight finish (they are paid for); unsent stay None
                results[i] = await self._send(client, bodies[i])

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(bodies)))))
        return results

    async def _send(self, client: httpx.AsyncClient, body: dict) -> BackendResult:
        tokens = request_tokens(body)
        last: BackendResult | None = None
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire(tokens)
            self.stats["attempts"] += 1
            wait: float | None = None
            try:
                resp = await client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                self.stats["timeouts"] += 1
                last = self._transport_error(504, "upstream_timeout", exc)
            except httpx.TransportError as exc:
                self.stats["connection_errors"] += 1
                last = self._transport_error(502, "upstream_unavailable", exc)
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    try:
                        payload = resp.json()
                    except ValueError:
                        return self._error(
                            502,
                            "upstream_bad_response",
                            "Upstream returned a non-JSON success body.",
                        )
                    self.stats["succeeded"] += 1
                    return BackendResult(200, payload)
                self.stats[f"status_{status}"] += 1
                last = self._upstream_error(resp)
                if status not in RETRY_STATUSES and status < 500:
                    self.stats["failed"] += 1
                    return last
                wait = parse_retry_after(resp.headers)
            if attempt == self.max_retries:
                break
            self.stats["retries"] += 1
            delay = self.backoff.delay(attempt, wait)
            if wait is not None:  # a little jitter so retries told to wait do not arrive together
                delay += random.uniform(0, 0.1 + 0.1 * delay)
            await asyncio.sleep(delay)
        self.stats["failed"] += 1
        assert last is not None
        return last

    # -- error results -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text, self.__api_key)

    def _error(self, status: int, code: str, message: str) -> BackendResult:
        body = error_body(self._scrub(message), code=code, status_code=status)
        return BackendResult(status, body)

    def _transport_error(self, status: int, code: str, exc: Exception) -> BackendResult:
        what = "timed out" if status == 504 else "could not be reached"
        detail = excerpt(str(exc), self.__api_key, 200)
        return self._error(
            status, code, f"Upstream {what} after retries ({type(exc).__name__}: {detail})."
        )

    def _upstream_error(self, resp: httpx.Response) -> BackendResult:
        """The upstream's own error envelope when it sent one, else a wrapped excerpt."""
        status = resp.status_code
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            err = payload["error"]
            message = err.get("message")
            body = error_body(
                self._scrub(str(message))
                if message is not None
                else f"Upstream returned HTTP {status}.",
                type=err.get("type") if isinstance(err.get("type"), str) else None,
                param=err.get("param") if isinstance(err.get("param"), str) else None,
                code=str(err["code"]) if err.get("code") is not None else None,
                status_code=status,
            )
            return BackendResult(status, body)
        text = excerpt(resp.text, self.__api_key, _EXCERPT) if resp.content else ""
        message = f"Upstream returned HTTP {status}" + (f": {text}" if text else ".")
        return BackendResult(status, error_body(message, code="upstream_error", status_code=status))
