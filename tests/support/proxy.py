"""A real fault-injecting HTTP proxy for tests, on a free loopback port.

It forwards every request to an upstream origin and, by a programmable plan, answers some of
them with a fault instead:

* ``"429"``          429 with ``Retry-After`` (upstream never sees the request)
* ``"500"``          500 with a JSON error body (upstream never sees the request)
* ``"reset"``        reads the request, then resets the connection (upstream never sees it)
* ``"reset_after"``  forwards the request, then resets instead of answering (the server acted)
* ``"truncate"``     forwards, sends the headers with the full Content-Length, part of the
                     body, then closes the connection
* ``"echo"``         500 whose body echoes the request headers (a leaky server: tests check
                     that no secret from it reaches an error message)

``ranges`` sets what happens to ``Range`` request headers: ``"pass"`` forwards them,
``"strip"`` drops them (a server that ignores ranges), ``"emulate"`` fetches the whole body
upstream and answers 206 with the slice (a server that honours ranges).

Usage::

    with FaultProxy(server.base_url) as proxy:
        proxy.add("reset_after", method="POST", path=r"/v1/batches")
        proxy.add("429", every=3, retry_after="1")
        client = BatchClient(proxy.base_url, api_key=...)
        ...
        assert proxy.forwarded[("POST", "/v1/batches")] == 1
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

FAULTS = ("429", "500", "reset", "reset_after", "truncate", "echo")
RANGES = ("pass", "strip", "emulate")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"}


@dataclass
class Rule:
    """Inject `fault` into requests matching `method` and `path` (a regex, full match).

    The rule fires on every `every`-th matching request (1 = each one), at most `times` times
    (None = without end). `retry_after` is the 429's header value; `keep` the fraction of the
    body a truncated download delivers.
    """

    fault: str
    method: str | None = None
    path: str | None = None
    every: int = 1
    times: int | None = 1
    retry_after: str = "1"
    keep: float = 0.5
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")
        if self.every < 1:
            raise ValueError("every must be >= 1")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or re.fullmatch(self.path, path) is not None

    def consume(self) -> bool:
        """Count one matching request; True when the fault fires on it."""
        if self.times is not None and self.fired >= self.times:
            return False
        self.seen += 1
        if self.seen % self.every:
            return False
        self.fired += 1
        return True


class FaultProxy:
    """Threaded HTTP/1.1 proxy to `upstream` (only its scheme://host:port is used)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0,
                 ranges: str = "pass") -> None:
        if ranges not in RANGES:
            raise ValueError(f"ranges must be one of {RANGES}")
        self.ranges = ranges
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self._upstream_path = parts.path.rstrip("/")
        self.rules: list[Rule] = []
        self.received: Counter[tuple[str, str]] = Counter()  # every request the proxy read
        self.forwarded: Counter[tuple[str, str]] = Counter()  # requests that reached upstream
        self.injected: Counter[tuple[str, str, str]] = Counter()  # (fault, method, path)
        self.log: list[dict] = []  # one entry per request: method, path, fault, range
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- public ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The proxy's origin, e.g. ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The proxy's URL with the upstream's path prefix (e.g. ``.../v1``)."""
        return self.url + self._upstream_path

    def add(self, fault: str, *, method: str | None = None, path: str | None = None,
            every: int = 1, times: int | None = 1, retry_after: str = "1",
            keep: float = 0.5) -> Rule:
        """Add a rule to the plan; rules are tried in the order added, first firing one wins."""
        rule = Rule(fault, method, path, every, times, retry_after, keep)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop the plan and reset every counter."""
        with self._lock:
            self.rules.clear()
            self.received.clear()
            self.forwarded.clear()
            self.injected.clear()
            self.log.clear()

    def count(self, method: str, path: str, counter: str = "forwarded") -> int:
        """Sum of a counter over paths fully matching the regex `path`."""
        counts: Counter = getattr(self, counter)
        with self._lock:
            return sum(n for (m, p), n in counts.items() if m == method and re.fullmatch(path, p))

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------
    def _pick(self, method: str, path: str, range_header: str | None) -> Rule | None:
        with self._lock:
            self.received[(method, path)] += 1
            chosen = None
            for rule in self.rules:
                if rule.matches(method, path) and rule.consume():
                    self.injected[(rule.fault, method, path)] += 1
                    chosen = rule
                    break
            self.log.append({"method": method, "path": path, "range": range_header,
                             "fault": chosen.fault if chosen else None})
        return chosen

    def _count_forwarded(self, method: str, path: str) -> None:
        with self._lock:
            self.forwarded[(method, path)] += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet in tests
                pass

            def _any(self) -> None:
                method = self.command
                path = urlsplit(self.path).path
                body = self._read_body()
                rule = proxy._pick(method, path, self.headers.get("Range"))
                fault = rule.fault if rule else None
                if fault == "429":
                    self._reply(429, {"error": {"message": "rate limited by proxy",
                                                "type": "rate_limit", "code": "rate_limited"}},
                                {"Retry-After": rule.retry_after})
                    return
                if fault == "500":
                    self._reply(500, {"error": {"message": "injected failure",
                                                "type": "server_error", "code": None}})
                    return
                if fault == "reset":
                    self._reset()
                    return
                if fault == "echo":
                    self._reply(500, {"error": {"message": "echo",
                                                "headers": dict(self.headers.items())}})
                    return
                self._forward(method, body, rule)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _any

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, payload: dict, extra: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _reset(self) -> None:
                # SO_LINGER 0 makes close() send RST instead of FIN: a real connection reset.
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.connection.close()

            def _forward(self, method: str, body: bytes, rule: Rule | None) -> None:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
                wanted = None
                if proxy.ranges != "pass":
                    wanted = headers.pop("Range", None) or headers.pop("range", None)
                    if proxy.ranges == "strip":
                        wanted = None
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                if body or method in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                                  timeout=120)
                try:
                    conn.request(method, self.path, body=body, headers=headers)
                    upstream = conn.getresponse()
                    proxy._count_forwarded(method, urlsplit(self.path).path)
                    if rule is not None and rule.fault == "reset_after":
                        upstream.read()
                        self._reset()
                        return
                    if wanted and upstream.status == 200:
                        self._relay_range(upstream, wanted, rule)
                    else:
                        self._relay(method, upstream, rule)
                finally:
                    conn.close()

            def _relay(self, method: str, upstream: http.client.HTTPResponse,
                       rule: Rule | None) -> None:
                length_header = upstream.getheader("Content-Length")
                truncate = rule is not None and rule.fault == "truncate"
                if length_header is None:  # chunked upstream: buffer to learn the length
                    data = upstream.read()
                    length, source = len(data), None
                else:
                    data, length, source = None, int(length_header), upstream
                self.send_response_only(upstream.status, upstream.reason)
                for k, v in upstream.getheaders():
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(length))
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if method == "HEAD":
                    return
                limit = int(length * rule.keep) if truncate else length
                sent = 0
                if data is not None:
                    self.wfile.write(data[:limit])
                    sent = limit
                else:
                    while sent < limit:
                        chunk = source.read(min(65536, limit - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
                if truncate:  # a clean close (FIN) mid-body, as a dropped download looks
                    self.close_connection = True
                    self.wfile.flush()

            def _relay_range(self, upstream: http.client.HTTPResponse, wanted: str,
                             rule: Rule | None) -> None:
                data = upstream.read()
                match = re.fullmatch(r"bytes=(\d+)-", wanted.strip())
                start = int(match.group(1)) if match else 0
                if start >= len(data):
                    self.send_response_only(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                part = data[start:]
                truncate = rule is not None and rule.fault == "truncate"
                self.send_response_only(206)
                for k, v in upstream.getheaders():
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(part)))
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(part[: int(len(part) * rule.keep)] if truncate else part)
                if truncate:
                    self.close_connection = True
                    self.wfile.flush()

        return Handler
