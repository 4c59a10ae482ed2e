"""A small real-time OpenAI-compatible endpoint on a free loopback port, for upstream tests.

It enforces a rate (token bucket: `rpm` per minute, `burst` deep) and answers 429 with
Retry-After (and retry-after-ms, the exact wait) above it; it can also fail a share of requests with 500, and always fails inputs
that ask for it ("status:503" as the input or the last message content → 503 every time).
Every request is recorded (arrival time, status) so tests can check the rate they saw.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        status, headers, payload = self.server.owner.answer(self.path, self.headers, raw)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RateLimitedEndpoint


class RateLimitedEndpoint:
    """Context manager: `.base_url` is "http://127.0.0.1:PORT/v1"."""

    def __init__(
        self,
        rpm: float | None = None,
        burst: int = 5,
        fail_rate: float = 0.0,
        retry_after: str | None = None,
        latency: float = 0.0,
        api_key: str | None = None,
        seed: int = 0,
    ) -> None:
        self.rpm, self.burst, self.fail_rate = rpm, burst, fail_rate
        self.retry_after, self.latency, self.api_key = retry_after, latency, api_key
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = time.monotonic()
        self.log: list[tuple[float, int]] = []  # (monotonic arrival, status)
        self.texts: list[str] = []  # the input / last message of each logged request
        self.auth_seen: set[str | None] = set()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RateLimitedEndpoint:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, status: int) -> int:
        return sum(1 for _, s in self.log if s == status)

    def _admit(self) -> tuple[bool, float]:
        """Token bucket; returns (allowed, seconds until the next token)."""
        if not self.rpm:
            return True, 0.0
        rate = self.rpm / 60.0
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True, 0.0
        return False, (1.0 - self._tokens) / rate

    def answer(self, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], dict]:
        arrival = time.monotonic()
        with self._lock:
            self.auth_seen.add(headers.get("Authorization"))
            allowed, wait = self._admit()
            flaky = self._rng.random() < self.fail_rate
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        status, extra, payload = self._respond(path, headers, body, allowed, wait, flaky)
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.log.append((arrival, status))
            self.texts.append(_text(body))
        return status, extra, payload

    def _respond(
        self, path: str, headers: Any, body: dict, allowed: bool, wait: float, flaky: bool
    ) -> tuple[int, dict[str, str], dict]:
        if self.api_key and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, _error("Incorrect API key provided.", "invalid_api_key")
        if not allowed:
            # Like OpenAI: whole seconds in Retry-After, the exact wait in retry-after-ms,
            # unless the test fixed a Retry-After value.
            if self.retry_after is not None:
                extra = {"Retry-After": self.retry_after}
            else:
                extra = {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000) + 1)}
            return (
                429,
                extra,
                _error(f"Rate limit reached; retry in {wait:.2f}s.", "rate_limit_exceeded"),
            )
        text = _text(body)
        if text.startswith("status:"):
            code = int(text.split(":", 1)[1])
            return code, {}, _error(f"Forced failure {code}.", "forced")
        if flaky:
            return 500, {}, _error("The server had an error while processing your request.", None)
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 1.0, 0.5]}
                for i, t in enumerate(inputs)
            ]
            n = sum(len(str(t).split()) for t in inputs)
            return (
                200,
                {},
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model"),
                    "usage": {"prompt_tokens": n, "total_tokens": n},
                },
            )
        return (
            200,
            {},
            {
                "id": "chatcmpl-upstream",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"echo: {text}",
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


def _text(body: dict) -> str:
    if "messages" in body:
        msgs = body.get("messages") or [{}]
        content = msgs[-1].get("content") if isinstance(msgs[-1], dict) else ""
        return content if isinstance(content, str) else ""
    inp = body.get("input")
    return inp if isinstance(inp, str) else ""


def _error(message: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
