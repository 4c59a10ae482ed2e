"""A small, typed client for OpenAI-format Files and Batches APIs, on httpx.

Modelled on httpx's own style: one class, explicit errors (batch_workflows.errors), no magic.
Every call retries 429, 5xx, connection errors and read timeouts with jittered exponential
backoff that honours ``Retry-After``; after the last attempt it raises RateLimitError (429)
or ProviderError. Creating a batch is made safe to retry with an idempotency key kept in the
batch's metadata. Downloads stream to disk, resume with a Range request when the server
honours it, and verify the final length.

Usage::

    with BatchClient("http://127.0.0.1:8765/v1", api_key=key) as client:
        f = client.upload_file("requests.jsonl")
        b = client.create_batch(f["id"], "/v1/embeddings", idempotency_key="abc")
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from batch_workflows import redaction
from batch_workflows.errors import (
    AuthenticationError,
    BatchTimeoutError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitError,
)
from batch_workflows.wire import MAX_METADATA_PAIRS, TERMINAL_STATUSES

__all__ = [
    "IDEMPOTENCY_METADATA_KEY",
    "NOT_REATTACHABLE_STATUSES",
    "TERMINAL_STATUSES",
    "Backoff",
    "BatchClient",
    "RetryEvent",
    "is_reattachable",
]

logger = logging.getLogger("batch_workflows.client")

# Metadata key that carries the idempotency key of a submission.
IDEMPOTENCY_METADATA_KEY = "idempotency_key"
# The one re-attach rule (used by create_batch and by the lifecycle's find_submission): a batch
# carrying the same idempotency key is the submission, whatever became of it, unless it was
# cancelled before completing anything. A failed, expired or part-run cancelled batch already
# ran (its unfinished requests are handled by the lifecycle's next attempt); creating another
# for the same key would pay twice for what it did. A cancel that stopped it before any request
# completed frees the key for a new batch (nothing was paid).
NOT_REATTACHABLE_STATUSES = frozenset({"cancelling", "cancelled"})
_EXCERPT = 300

# Failures after which the request may or may not have reached the server.
AMBIGUOUS_ERRORS = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError,
              httpx.RemoteProtocolError)
# Failures after which the request certainly did not reach the server.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff: attempt n waits a random time in [d/2, d], d = initial * multiplier**n."""

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After is capped: the caller's attempts stay bounded

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.initial * self.multiplier**attempt, self.maximum)
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen; passed to the client's `on_retry` callback."""

    method: str
    path: str
    attempt: int  # 1 for the first retry
    reason: str  # "HTTP 429", "ReadTimeout", "truncated download", ...
    delay: float


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 excerpt: str = "", ambiguous: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.excerpt = excerpt
        self.ambiguous = ambiguous


def is_reattachable(batch: Mapping[str, Any]) -> bool:
    """Whether an existing batch with the same idempotency key stands for the submission."""
    if batch.get("status") not in NOT_REATTACHABLE_STATUSES:
        return True
    # only completed requests are billed (and some providers count unrun ones as failed)
    return int((batch.get("request_counts") or {}).get("completed") or 0) > 0


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


class BatchClient:
    """Client for an OpenAI-compatible Batch API (Files + Batches).

    `base_url` includes the version prefix, e.g. ``https://api.openai.com/v1``. The API key is
    sent as a bearer token and never appears in an error message, a log line or ``repr``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff: Backoff | None = None,
        *,
        on_retry: Callable[[RetryEvent], None] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.on_retry = on_retry
        self._api_key = api_key or None
        all_headers = {"User-Agent": "batch-workflows"}
        all_headers.update(headers or {})
        if self._api_key:
            all_headers["Authorization"] = f"Bearer {self._api_key}"
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"BatchClient(base_url={self.base_url!r}, api_key={key})"

    # -- files -----------------------------------------------------------------------------
    def upload_file(self, path: str | os.PathLike[str], purpose: str = "batch") -> dict:
        """Upload a file (streamed from disk as multipart) and return the file object."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")

        def attempt() -> httpx.Response:
            with p.open("rb") as fh:  # reopened per attempt: a retry sends the whole file again
                files = {"file": (p.name, fh, "application/jsonl")}
                return self._http.post("files", data={"purpose": purpose}, files=files)

        return self._call("POST", "/files", attempt)

    def retrieve_file(self, file_id: str) -> dict:
        """Return the file object (`id`, `bytes`, `filename`, `purpose`, ...)."""
        return self._json("GET", f"/files/{_seg(file_id)}")

    def delete_file(self, file_id: str) -> dict:
        """Delete a file; returns the provider's deletion object.

        A 404 on a retry that follows an ambiguous failure means the first attempt went
        through, so it counts as deleted.
        """
        path = f"/files/{_seg(file_id)}"
        state = {"ambiguous": False}

        def attempt() -> dict:
            try:
                response = self._http.delete(path.lstrip("/"))
            except AMBIGUOUS_ERRORS:
                state["ambiguous"] = True
                raise
            if response.status_code == 404 and state["ambiguous"]:
                return {"id": file_id, "object": "file", "deleted": True}
            state["ambiguous"] = state["ambiguous"] or response.status_code >= 500
            return self._decode(response, "DELETE", path)

        return self._retrying("DELETE", path, attempt)

    def download_file(self, file_id: str, dest_path: str | os.PathLike[str]) -> int:
        """Stream a file's content to `dest_path`; returns the number of bytes written.

        A truncated transfer is resumed with ``Range`` when the server answers 206, and restarted
        otherwise. The length is checked against the file object's ``bytes`` and the response's
        Content-Length. The file appears at `dest_path` only once complete.
        """
        expected = self.retrieve_file(file_id).get("bytes")
        expected = int(expected) if isinstance(expected, int | float) and expected >= 0 else None
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        path = f"/files/{_seg(file_id)}/content"
        state = {"written": 0}
        part.write_bytes(b"")

        def attempt() -> int:
            return self._download_attempt(path, part, state, expected)

        try:
            size = self._retrying("GET", path, attempt)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return size

    def _download_attempt(self, path: str, part: Path, state: dict[str, int],
                          expected: int | None) -> int:
        headers = {"Accept-Encoding": "identity"}  # byte counts and ranges refer to the raw file
        offset = state["written"]
        plain = True
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.stream("GET", path.lstrip("/"), headers=headers) as response:
                if response.status_code == 416:
                    if expected is not None and offset == expected:
                        return offset  # everything had arrived before the connection dropped
                    state["written"] = 0
                    raise _Retryable("range not satisfiable; restarting download")
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(response, "GET", path)
                start = 0
                if response.status_code == 206:
                    if _range_start(response) != offset:
                        state["written"] = 0
                        raise _Retryable("unexpected Content-Range; restarting download")
                    start = offset
                # A compressed body cannot be resumed or checked against Content-Length.
                plain = response.headers.get("content-encoding", "identity") == "identity"
                total_from_header = _content_length(response) if plain else None
                if total_from_header is not None:
                    total_from_header += start
                state["written"] = start
                # Write chunks as they arrive: a re-chunker would hold back bytes that a
                # dropped connection then loses.
                with part.open("ab" if start else "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        state["written"] += len(chunk)
        except AMBIGUOUS_ERRORS as exc:
            if not plain:
                state["written"] = 0
            raise _Retryable(f"truncated download ({type(exc).__name__})") from None
        written = state["written"]
        for label, want in (("Content-Length", total_from_header), ("file bytes", expected)):
            if want is not None and written != want:
                if written > want:  # more than announced: start over rather than keep junk
                    state["written"] = 0
                raise _Retryable(f"truncated download: {written} of {want} bytes ({label})")
        return written

    # -- batches ---------------------------------------------------------------------------
    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        created_after: int | None = None,
        look_first: bool = True,
    ) -> dict:
        """Create a batch and return it.

        With `idempotency_key`, an existing batch whose metadata carries the key (and that was
        not cancelled before completing anything, see `is_reattachable`) is returned instead of
        creating a new one, and after an ambiguous failure (connection reset, timeout, 5xx) the
        key is looked up again before retrying. A caller that has just looked for the key
        itself passes ``look_first=False``: the list is then scanned only after an ambiguous
        failure. Without a key, a random one is still recorded so that a retry after an
        ambiguous failure can tell whether the first attempt went through. `extra_body` is
        merged into the request body for provider extras (e.g. Nebius ``override_settings``).
        `created_after` (unix seconds) bounds the lookups to recent batches on providers with a
        long history; the default scans the whole list, so that nothing is paid twice.
        """
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        if idempotency_key is not None and look_first:
            existing = self._find_reusable(idempotency_key, created_after)
            if existing is not None:
                logger.info("re-attached to batch %s for idempotency key %s",
                            existing.get("id"), idempotency_key)
                return existing
        if idempotency_key is not None:
            meta[IDEMPOTENCY_METADATA_KEY] = idempotency_key
        elif len(meta) < MAX_METADATA_PAIRS and IDEMPOTENCY_METADATA_KEY not in meta:
            meta[IDEMPOTENCY_METADATA_KEY] = f"auto-{uuid.uuid4().hex}"
        key = meta.get(IDEMPOTENCY_METADATA_KEY)
        body: dict[str, Any] = dict(extra_body or {})
        body.update(input_file_id=input_file_id, endpoint=endpoint,
                    completion_window=completion_window)
        if meta:
            body["metadata"] = meta
        headers = {"Idempotency-Key": key} if key else {}
        # Without a key an ambiguous failure cannot be checked: retry only what never arrived.
        return self.post_checked(
            "/batches", lambda: self._http.post("batches", json=body, headers=headers),
            look=(lambda: self._find_reusable(key, created_after)) if key else None)

    def retrieve_batch(self, batch_id: str) -> dict:
        """Return the batch object."""
        return self._json("GET", f"/batches/{_seg(batch_id)}")

    def cancel_batch(self, batch_id: str) -> dict:
        """Ask the provider to cancel a batch; returns the batch (usually `cancelling`)."""
        return self._json("POST", f"/batches/{_seg(batch_id)}/cancel")

    def list_batches(self, limit: int = 100, after: str | None = None) -> Iterator[dict]:
        """Yield every batch, newest first, fetching pages of `limit` with ``after``/``has_more``."""
        return self.paginate("/batches", {"limit": limit}, "after", after)

    def paginate(self, path: str, params: Mapping[str, Any], cursor_param: str,
                 cursor: str | None = None) -> Iterator[dict]:
        """The items of a list endpoint, page after page (``data``, ``has_more``, ``last_id``),
        the next page asked for with ``cursor_param`` = the last id seen."""
        while True:
            query = dict(params)
            if cursor:
                query[cursor_param] = cursor
            page = self._json("GET", path, params=query)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            cursor = page.get("last_id") or data[-1].get("id")

    def find_batches(
        self,
        metadata_key: str,
        value: str,
        *,
        statuses: set[str] | frozenset[str] | None = None,
        created_after: int | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Batches whose ``metadata[metadata_key] == value``, newest first.

        Scans the provider's list (Batch APIs cannot filter by metadata). `statuses` keeps only
        those statuses; `created_after` (unix seconds) stops the scan at the first older batch
        (lists come newest first).
        """
        found = []
        for batch in self.list_batches(limit=limit):
            created = batch.get("created_at")
            if created_after is not None and isinstance(created, int) and created < created_after:
                break
            if (batch.get("metadata") or {}).get(metadata_key) != value:
                continue
            if statuses is not None and batch.get("status") not in statuses:
                continue
            found.append(batch)
        return found

    def wait_batch(self, batch_id: str, poll_interval: float = 2.0,
                   timeout: float | None = None) -> dict:
        """Poll until the batch is terminal; raises BatchTimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.retrieve_batch(batch_id)
            if batch.get("status") in TERMINAL_STATUSES:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise BatchTimeoutError(
                    f"batch {batch_id} still {batch.get('status')} after {timeout:g}s")
            time.sleep(poll_interval)

    # -- internals -------------------------------------------------------------------------
    def post_checked(self, path: str, send: Callable[[], httpx.Response],
                     look: Callable[[], dict | None] | None) -> dict:
        """A POST that must not be applied twice (a create), retried with backoff.

        After an ambiguous failure (connection reset, timeout, 5xx: the server may have applied
        it), `look` is asked before sending again and what it finds is returned instead; with
        no `look`, an ambiguous failure is not retried (ProviderError), only what never arrived.
        """
        state = {"ambiguous": False}

        def attempt() -> dict:
            if state["ambiguous"] and look is not None:
                found = look()
                if found is not None:
                    return found
            state["ambiguous"] = False
            try:
                response = send()
            except AMBIGUOUS_ERRORS:
                state["ambiguous"] = True
                raise
            if response.status_code >= 500:
                state["ambiguous"] = True
            return self._decode(response, "POST", path)

        return self._retrying("POST", path, attempt, retry_ambiguous=look is not None)

    def _find_reusable(self, key: str, created_after: int | None = None) -> dict | None:
        for batch in self.find_batches(IDEMPOTENCY_METADATA_KEY, key, created_after=created_after):
            if is_reattachable(batch):
                return batch
        return None

    def _json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> dict:
        def attempt() -> httpx.Response:
            return self._http.request(method, path.lstrip("/"), params=params)

        return self._call(method, path, attempt)

    def _call(self, method: str, path: str, send: Callable[[], httpx.Response]) -> dict:
        return self._retrying(method, path, lambda: self._decode(send(), method, path))

    def _retrying(self, method: str, path: str, attempt: Callable[[], Any], *,
                  retry_ambiguous: bool = True) -> Any:
        """Run `attempt` until it succeeds, retrying transient failures with backoff."""
        retries = 0
        while True:
            try:
                return attempt()
            except _Retryable as exc:
                failure = exc
            except _UNSENT as exc:
                failure = _Retryable(type(exc).__name__)
            except AMBIGUOUS_ERRORS as exc:
                failure = _Retryable(type(exc).__name__, ambiguous=True)
            if failure.ambiguous and not retry_ambiguous:
                raise ProviderError(
                    f"{method} {path} failed ({failure.reason}); not retried because it "
                    "may have been applied", failure.status, self._redact(failure.excerpt)) from None
            if retries >= self.max_retries:
                raise self._exhausted(method, path, failure, retries + 1) from None
            delay = self.backoff.delay(retries, failure.retry_after)
            retries += 1
            event = RetryEvent(method, path, retries, failure.reason, delay)
            logger.warning("%s %s: %s; retry %d/%d in %.2fs", method, path, failure.reason,
                           retries, self.max_retries, delay)
            if self.on_retry is not None:
                self.on_retry(event)
            time.sleep(delay)

    def _exhausted(self, method: str, path: str, failure: _Retryable, attempts: int) -> ProviderError:
        message = f"{method} {path} failed after {attempts} attempt(s): {failure.reason}"
        if failure.status == 429:
            return RateLimitError(message, 429, self._redact(failure.excerpt))
        return ProviderError(message, failure.status, self._redact(failure.excerpt))

    def _decode(self, response: httpx.Response, method: str, path: str) -> dict:
        """Return the JSON body of a 2xx response; raise a typed or retryable error otherwise."""
        if response.status_code >= 400:
            self._raise_for_status(response, method, path)
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(f"{method} {path}: response is not JSON", response.status_code,
                                self._excerpt(response)) from None
        if not isinstance(data, dict):
            raise ProviderError(f"{method} {path}: expected a JSON object", response.status_code,
                                self._excerpt(response))
        return data

    def _raise_for_status(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        excerpt = self._excerpt(response)
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", status=status, excerpt=excerpt,
                             retry_after=parse_retry_after(response.headers), ambiguous=status >= 500)
        detail = self._redact(_error_message(response) or excerpt)
        where = f"{method} {path}"
        if status in (401, 403):
            raise AuthenticationError(f"{where}: not authorised", status, excerpt)
        if status == 404:
            raise NotFoundError(f"{where}: not found", status, excerpt)
        if status in (400, 409, 413, 422):
            raise InvalidRequestError(f"{where}: {detail}", status, excerpt)
        raise ProviderError(f"{where}: unexpected response", status, excerpt)

    def _excerpt(self, response: httpx.Response) -> str:
        try:
            text = response.text
        except (httpx.ResponseNotRead, UnicodeDecodeError):
            return ""
        return redaction.excerpt(text, self._api_key, _EXCERPT)

    def _redact(self, text: str) -> str:
        # A misbehaving server or proxy could echo the Authorization header back.
        return redaction.redact(text, self._api_key)


def _seg(value: str) -> str:
    """Quote an id as a single path segment, so no id can reach another route."""
    if not value:
        raise ValueError("empty id")
    return quote(value, safe="")


def _error_message(response: httpx.Response) -> str | None:
    """The provider's ``error.message`` (OpenAI format), or a top-level ``detail``/``message``."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"]
    if isinstance(err, str):
        return err
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return data[key]
    return None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _range_start(response: httpx.Response) -> int | None:
    # Content-Range: bytes 100-199/200
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    if unit.strip() != "bytes":
        return None
    start, _, _ = spec.partition("-")
    try:
        return int(start)
    except ValueError:
        return None
