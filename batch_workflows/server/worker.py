"""Batch execution: worker threads that take active batches round-robin, one chunk at a time.

Crash safety: result lines are appended to the partial output/error files and fsynced, then
the new byte offsets, the input offset and the done-request count are committed in one SQLite
transaction. On restart the partial files are truncated back to the committed offsets and work
resumes at the first request not done, so every custom_id gets exactly one line and committed
requests are never run again.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.backends.base import (
    BackendResult,
    StopCheck,
    error_result,
    model_not_found,
)
from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle.storage import fsync_path
from batch_workflows.server.input_check import InputCheck, check_input
from batch_workflows.server.provider_rules import (
    TokenQuota,
    first_line_of_model,
    model_not_found_error,
)
from batch_workflows.server.registry import ENDPOINTS, BackendRegistry
from batch_workflows.server.settings import ServerSettings
from batch_workflows.server.store import Store, now

log = logging.getLogger("batch_workflows.server")

BOM = b"\xef\xbb\xbf"
EXPIRE_CHUNK = 1000
DEFAULT_CHUNK = 64
# A chunk also stops at this many bytes of request lines: requests that carry many inputs (an
# embeddings request of 128 chunks) would otherwise make one backend call hold minutes of work,
# gigabytes of results, and delay cancel, expiry and the crash-safe commit behind it.
CHUNK_BYTES = 4 << 20
IDLE_WAIT = 0.25
MAX_FAULTS = 6  # consecutive failed steps (backing off 2, 4, ... 30 s) before a batch fails
MAX_BACKOFF = 30.0
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
HALT_POLL = 0.5  # seconds between a running chunk's looks for a cancel or an expiry
PROGRESS_EVERY = 2.0  # seconds between commits of a running chunk's finished requests


@dataclass
class Backoff:
    """A batch whose last steps failed: how many in a row, and when it may be tried again."""

    faults: int
    retry_at: float  # time.monotonic()


@dataclass
class Chunk:
    """Requests read from the input file: (custom_id, body) pairs and where reading stopped."""

    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    end_offset: int = 0
    eof: bool = False


def read_chunk(path: Path, offset: int, limit: int, max_bytes: int = CHUNK_BYTES) -> Chunk:
    """Up to `limit` requests (and about `max_bytes`, at least one) from byte `offset`.

    Blank lines are skipped."""
    chunk = Chunk(end_offset=offset)
    with open(path, "rb") as handle:
        handle.seek(offset)
        while len(chunk.items) < limit and chunk.end_offset - offset < max_bytes:
            raw = handle.readline()
            if not raw:
                chunk.eof = True
                break
            if chunk.end_offset == 0 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            chunk.end_offset = handle.tell()
            if not raw.strip():
                continue
            obj = orjson.loads(raw)
            chunk.items.append((str(obj["custom_id"]), obj.get("body") or {}))
        else:
            # Peek so a batch whose last chunk is full finishes without an empty round.
            rest = handle.read(1 << 16)
            chunk.eof = not rest.strip() and len(rest) < (1 << 16)
    return chunk


def result_line(custom_id: str, status: int | None, body: Any, error: Any = None) -> bytes:
    response = None
    if status is not None:
        response = {"status_code": status, "request_id": "req_" + secrets.token_hex(12),
                    "body": body}
    line = {"id": "batch_req_" + secrets.token_hex(12), "custom_id": custom_id,
            "response": response, "error": error}
    return orjson.dumps(line) + b"\n"


def _unfinished_line(custom_id: str, why: str | None) -> bytes:
    """The error line of a request that was never run: its batch expired, or (should not
    happen) its backend stopped for no known reason."""
    if why == "expired":
        error = {"code": "batch_expired", "message": EXPIRED_MESSAGE}
    else:
        error = {"code": "server_error", "message": "The server stopped before running this request."}
    return result_line(custom_id, None, None, error)


def _append(path: Path, data: bytes, committed: int) -> int:
    """Append `data` at the committed offset (dropping any uncommitted tail); durable on return."""
    if not data:
        return committed
    with open(path, "ab") as handle:
        if handle.tell() != committed:
            handle.truncate(committed)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return committed + len(data)


def _lines(items: list[tuple[str, BackendResult | None]], halted: str | None
           ) -> tuple[bytearray, bytearray, int, int, int, int]:
    """Result lines of (custom_id, result) pairs: (output, error, completed, failed, input
    tokens, output tokens). A result of None is a request the backend stopped before."""
    out, err = bytearray(), bytearray()
    completed = failed = tokens_in = tokens_out = 0
    for custom_id, result in items:
        if result is None:  # the backend stopped early: cancelled or expired meanwhile
            if halted == "cancelled":
                continue  # like every request after a cancel: no line
            err += _unfinished_line(custom_id, halted)
            failed += 1
            continue
        status, body = int(result.status_code), result.body
        if status == 200:
            out += result_line(custom_id, status, body)
            completed += 1
            usage = (body or {}).get("usage") or {}
            tokens_in += int(usage.get("prompt_tokens") or 0)
            tokens_out += int(usage.get("completion_tokens") or 0)
        else:
            err += result_line(custom_id, status, body)
            failed += 1
    return out, err, completed, failed, tokens_in, tokens_out


def _last_ids(path: Path, size: int, count: int) -> set[str]:
    """custom_ids of the last `count` lines in the first `size` bytes of a results file."""
    if size <= 0 or not path.exists():
        return set()
    tail, end = b"", size
    with open(path, "rb") as handle:
        while end > 0 and tail.count(b"\n") <= count:  # one more: the first line is whole
            start = max(0, end - (1 << 20))
            handle.seek(start)
            tail, end = handle.read(end - start) + tail, start
    lines = [line for line in tail.split(b"\n") if line.strip()][-count:]
    return {str(orjson.loads(line)["custom_id"]) for line in lines}


class _Progress:
    """A running chunk's finished requests, committed every PROGRESS_EVERY seconds instead of
    all at its end: a chat chunk of 256 long requests runs for an hour, and its batch's
    request_counts.completed must grow meanwhile. The input offset stays at the chunk's start
    until the chunk is done; Worker._written finds these lines again if it is run anew."""

    def __init__(self, worker: Worker, batch: dict[str, Any], chunk: Chunk, committed: set[int]):
        self.worker, self.batch, self.chunk, self.committed = worker, batch, chunk, committed
        self.pending: dict[int, BackendResult] = {}
        self.last = time.monotonic()
        self.lock = threading.Lock()  # a backend may report from its own threads

    def finished(self, index: int, result: BackendResult) -> None:
        with self.lock:
            self.pending[index] = result
            if time.monotonic() - self.last < PROGRESS_EVERY:
                return
            items = [(self.chunk.items[i][0], r) for i, r in sorted(self.pending.items())]
            self.worker._commit(self.batch, None, *_lines(items, None))
            self.committed.update(self.pending)
            self.pending.clear()
            self.last = time.monotonic()


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size != size:
        with open(path, "r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())


class Worker:
    """Runs batches in background threads; `wake()` after creating or cancelling one."""

    def __init__(self, settings: ServerSettings, store: Store, backends: BackendRegistry):
        self.settings, self.store, self.backends = settings, store, backends
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._last_seq = 0
        # Batches backing off after a failed step; the scheduler skips them until retry_at,
        # so a faulting batch never holds a worker thread while it waits.
        self._backoff: dict[str, Backoff] = {}
        self._threads: list[threading.Thread] = []
        self._quota = (TokenQuota(settings.enqueued_token_limit, settings.organization)
                       if settings.enqueued_token_limit else None)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        for i in range(max(1, self.settings.workers)):
            thread = threading.Thread(target=self._loop, name=f"batch-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + 10  # a chunk cut short is redone after restart anyway
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.set()

    def recover(self) -> None:
        """Drop result lines written after the last commit (a crash between write and commit),
        unfinished uploads, and bodies or rows a crash left without their other half."""
        for tmp in self.store.tmp_dir.iterdir():
            tmp.unlink(missing_ok=True)
        bodies, rows = self.store.sweep_orphans()
        if bodies or rows:
            log.warning("removed %d file bodies without a record and %d records without a body",
                        len(bodies), len(rows))
        for batch in self.store.active_batches():
            _truncate(self.store.partial_path(batch["out_name"]), batch["out_bytes"])
            _truncate(self.store.partial_path(batch["err_name"]), batch["err_bytes"])
            if batch["status"] in ("in_progress", "finalizing", "cancelling"):
                log.info("batch %s: resuming at request %d", batch["id"], batch["next_index"])

    # -- scheduling -----------------------------------------------------------------------
    def _claim(self) -> dict[str, Any] | None:
        """The next batch to advance one step, round-robin over the admitted ones."""
        with self._lock:
            rows = self.store.active_batches()
            free = self.settings.max_concurrent_batches - sum(
                r["status"] in ("in_progress", "finalizing") for r in rows
            )
            clock, tick = now(), time.monotonic()
            eligible = []
            for row in rows:
                if row["status"] == "validating" and row["expires_at"] > clock:
                    if free <= 0:
                        continue  # queued: over the concurrent-batch limit
                    free -= 1  # admitted, even while backing off: it keeps its slot
                backoff = self._backoff.get(row["id"])
                if row["id"] not in self._busy and (backoff is None or backoff.retry_at <= tick):
                    eligible.append(row)
            if not eligible:
                return None
            later = [r for r in eligible if r["seq"] > self._last_seq]
            chosen = later[0] if later else eligible[0]
            self._last_seq = chosen["seq"]
            self._busy.add(chosen["id"])
            return chosen

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._claim()
            if batch is None:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()
                continue
            try:
                self.step(batch)
                with self._lock:
                    self._backoff.pop(batch["id"], None)
            except Exception as exc:  # keep the worker alive; the batch is retried later
                log.exception("batch %s: step failed", batch["id"])
                self._on_fault(batch, exc)
            finally:
                with self._lock:
                    self._busy.discard(batch["id"])

    def _on_fault(self, batch: dict[str, Any], exc: Exception) -> None:
        """Set the batch's retry time (2, 4, ... 30 s on); after MAX_FAULTS failures in a row,
        fail the batch (keeping what it has). The thread goes straight on to other batches."""
        with self._lock:
            previous = self._backoff.get(batch["id"])
            faults = previous.faults + 1 if previous else 1
            if faults < MAX_FAULTS:
                delay = min(2.0**faults, MAX_BACKOFF)
                self._backoff[batch["id"]] = Backoff(faults, time.monotonic() + delay)
                log.warning("batch %s: retrying in %gs (failure %d of %d)", batch["id"], delay,
                            faults, MAX_FAULTS)
                return
            self._backoff.pop(batch["id"], None)
        error = {"code": "server_error", "line": None, "param": None,
                 "message": f"the server could not process this batch: {type(exc).__name__}"}
        self.store.update_batch(batch["id"], errors=orjson.dumps([error]).decode())
        try:
            self._finalize(self.store.get_batch(batch["id"]) or batch, "failed")
        except Exception:  # leave it for the next start rather than crash the worker
            log.exception("batch %s: could not be failed cleanly", batch["id"])

    # -- one step of one batch ------------------------------------------------------------
    def step(self, batch: dict[str, Any]) -> None:
        status = batch["status"]
        if status == "cancelling":
            self._finalize(batch, "cancelled")
        elif status in ("validating", "in_progress") and now() >= batch["expires_at"]:
            self._expire(batch)
        elif status == "validating":
            self._validate(batch)
        elif status == "in_progress":
            self._run_chunk(batch)
        elif status == "finalizing":
            self._finalize(batch, batch["final_status"] or "completed")

    def _input_path(self, batch: dict[str, Any]) -> Path:
        return self.store.file_path(batch["input_file_id"])

    def _check_input(self, batch: dict[str, Any]) -> InputCheck:
        """Validate the input file; a validating batch whose input is bad is failed here."""
        info = self.store.get_file(batch["input_file_id"])
        filename = info["filename"] if info else batch["input_file_id"]
        served = frozenset(e for e in ENDPOINTS if self.backends.configured(e))
        try:
            check = check_input(
                self._input_path(batch), batch["endpoint"], filename, self.settings, served
            )
        except OSError as exc:  # the body vanished from disk: fail the batch, do not spin
            check = InputCheck(0, None, [{"code": "input_file_unreadable", "line": None,
                                          "message": f"{filename}: {exc.strerror}",
                                          "param": "input_file_id"}])
        except ConfigurationError as exc:  # e.g. restarted without the endpoint's backend
            check = InputCheck(0, None, [{"code": "unsupported_endpoint", "line": None,
                                          "message": str(exc), "param": "endpoint"}])
        if check.errors:
            log.info("batch %s: input rejected (%d problems)", batch["id"], len(check.errors))
            self.store.update_batch(
                batch["id"], only_if=("validating",), status="failed", failed_at=now(),
                errors=orjson.dumps(check.errors).decode(),
            )
        return check

    def _validate(self, batch: dict[str, Any]) -> None:
        check = self._check_input(batch)
        if check.errors:
            return
        error = self._provider_rule(batch, check.model)
        if error is None and self._quota is not None and check.model:
            error = self._quota.admit(batch, check.model, self._input_path(batch),
                                      self.store.active_batches, self._input_path,
                                      lambda: self._start(batch, check))
        elif error is None:
            self._start(batch, check)
        if error is not None:
            log.info("batch %s: failed at validation: %s", batch["id"], error["code"])
            self.store.update_batch(batch["id"], only_if=("validating",), status="failed",
                                    failed_at=now(), total=check.requests, model=check.model,
                                    errors=orjson.dumps([error]).decode())

    def _start(self, batch: dict[str, Any], check: InputCheck) -> None:
        self.store.update_batch(
            batch["id"], only_if=("validating",), status="in_progress", in_progress_at=now(),
            total=check.requests, model=check.model,
        )
        log.info("batch %s: %d requests valid, in progress", batch["id"], check.requests)

    def _provider_rule(self, batch: dict[str, Any], model: str | None) -> dict[str, Any] | None:
        """`--reject-unknown-models`: a file naming a model no backend serves fails whole."""
        if not self.settings.reject_unknown_models or not model:
            return None
        try:
            backend = self.backends.get(batch["endpoint"])
        except ConfigurationError:
            return None  # the endpoint check reports it
        if self.backends.serves(backend, model):
            return None
        return model_not_found_error(model, first_line_of_model(self._input_path(batch), model))

    def _chunk_size(self) -> int:
        return self.settings.chunk_size or 0

    def _run_chunk(self, batch: dict[str, Any]) -> None:
        endpoint = batch["endpoint"]
        batch = dict(batch)  # its offsets and counts advance as finished requests are committed
        try:
            backend = self.backends.get(endpoint)
            size = self._chunk_size() or int(getattr(backend, "max_batch", 0) or DEFAULT_CHUNK)
        except (ConfigurationError, ImportError, OSError) as exc:
            backend, size = None, self._chunk_size() or DEFAULT_CHUNK
            unavailable = f"The backend for {endpoint} is unavailable: {exc}"
        chunk = read_chunk(self._input_path(batch), batch["input_offset"], size)
        first = batch["next_index"]
        results: list[BackendResult | None] = [None] * len(chunk.items)  # None: not run
        written = self._written(batch, chunk)
        committed = {i for i, (cid, _) in enumerate(chunk.items) if cid in written}
        runnable = []
        for i, (_, body) in enumerate(chunk.items):
            model = body.get("model")
            if i in committed:
                continue  # finished by an earlier, interrupted run of this chunk
            if backend is None:
                results[i] = error_result(500, unavailable, code="backend_unavailable")
            elif not self.backends.serves(backend, model):
                results[i] = model_not_found(model, backend.model_ids)
            else:
                runnable.append(i)
        if committed:
            log.info("batch %s: %d of requests %d-%d were committed before; running the rest",
                     batch["id"], len(committed), first, first + len(chunk.items) - 1)
        if runnable:
            log.info("batch %s: running requests %d-%d", batch["id"], first,
                     first + len(chunk.items) - 1)
            bodies = [chunk.items[i][1] for i in runnable]
            progress = _Progress(self, batch, chunk, committed)
            try:
                outcome = backend.run(bodies, self._stop_check(batch),  # type: ignore[union-attr]
                                      on_result=lambda k, r: progress.finished(runnable[k], r))
                if len(outcome) != len(bodies):
                    raise RuntimeError(f"backend returned {len(outcome)} results for {len(bodies)}")
            except Exception as exc:  # a backend fault fails these requests, not the server
                log.exception("batch %s: backend failed", batch["id"])
                outcome = [error_result(500, f"backend error: {exc}", code="server_error")
                           ] * len(bodies)
            for i, result in zip(runnable, outcome, strict=True):
                results[i] = result
        halted = self._halted(batch) if None in (
            r for i, r in enumerate(results) if i not in committed) else None
        rest = [(cid, r) for i, ((cid, _), r) in enumerate(zip(chunk.items, results, strict=True))
                if i not in committed]
        self._commit(batch, chunk, *_lines(rest, halted))
        if halted:
            log.info("batch %s: %s while requests %d-%d ran; stopped early", batch["id"],
                     halted, first, first + len(chunk.items) - 1)
        elif chunk.eof:
            self.store.update_batch(
                batch["id"], only_if=("in_progress",), status="finalizing",
                finalizing_at=now(), final_status="completed",
            )

    def _written(self, batch: dict[str, Any], chunk: Chunk) -> set[str]:
        """custom_ids of this chunk whose lines an interrupted run of it already committed.

        At a chunk's start every counted request is before next_index, unless requests of this
        very chunk were committed (_Progress) before a crash or a stop: then they are the last
        lines of the partial files (custom_ids are unique in a batch, so no earlier line of
        those files can have one of this chunk's ids)."""
        extra = batch["completed"] + batch["failed"] - batch["next_index"]
        if extra <= 0:
            return set()
        ids = {cid for cid, _ in chunk.items}
        found: set[str] = set()
        for name, size in ((batch["out_name"], batch["out_bytes"]),
                           (batch["err_name"], batch["err_bytes"])):
            found |= ids & _last_ids(self.store.partial_path(name), size, extra)
        return found

    def _halted(self, batch: dict[str, Any]) -> str | None:
        """'cancelled' or 'expired' if the batch was cancelled or passed its window, else None."""
        row = self.store.get_batch(batch["id"])
        if row is None or row["status"] == "cancelling":
            return "cancelled"
        return "expired" if now() >= batch["expires_at"] else None

    def _stop_check(self, batch: dict[str, Any]) -> StopCheck:
        """should_stop for the backend: asks the store at most every HALT_POLL seconds."""
        asked, halted = 0.0, False

        def should_stop() -> bool:
            nonlocal asked, halted
            if not halted and time.monotonic() - asked >= HALT_POLL:
                asked = time.monotonic()
                halted = self._halted(batch) is not None
            return halted

        return should_stop

    def _commit(self, batch: dict[str, Any], chunk: Chunk | None, out: bytes, err: bytes,
                completed: int, failed: int, tokens_in: int = 0, tokens_out: int = 0) -> None:
        """Append lines and count them in one commit; with a chunk, it is done (the input
        offset moves past it), without one the lines are some of the running chunk's."""
        out_bytes = _append(self.store.partial_path(batch["out_name"]), bytes(out),
                            batch["out_bytes"])
        err_bytes = _append(self.store.partial_path(batch["err_name"]), bytes(err),
                            batch["err_bytes"])
        offset, index = batch["input_offset"], batch["next_index"]
        if chunk is not None:
            offset, index = chunk.end_offset, index + len(chunk.items)
        self.store.commit_chunk(batch["id"], out_bytes, err_bytes, offset, index, completed,
                                failed, tokens_in, tokens_out)
        batch.update(out_bytes=out_bytes, err_bytes=err_bytes, input_offset=offset,
                     next_index=index, completed=batch["completed"] + completed,
                     failed=batch["failed"] + failed)

    def _expire(self, batch: dict[str, Any]) -> None:
        """Unfinished requests go to the error file as batch_expired; finished ones stay.

        A batch still queued (validating) is validated first: a bad input fails as it would
        have, a good one gets a batch_expired line for every request from the first."""
        if batch["status"] == "validating":
            check = self._check_input(batch)
            if check.errors:
                return
            if not self.store.update_batch(batch["id"], only_if=("validating",),
                                           total=check.requests, model=check.model):
                return  # cancelled meanwhile: the next step settles it
            batch = self.store.get_batch(batch["id"])  # type: ignore[assignment]
        log.info("batch %s: completion window passed, expiring", batch["id"])
        while True:
            chunk = read_chunk(self._input_path(batch), batch["input_offset"], EXPIRE_CHUNK)
            written = self._written(batch, chunk)
            ids = [cid for cid, _ in chunk.items if cid not in written]
            err = b"".join(_unfinished_line(cid, "expired") for cid in ids)
            self._commit(batch, chunk, b"", err, 0, len(ids))
            if chunk.eof:
                break
            batch = self.store.get_batch(batch["id"])  # type: ignore[assignment]
        self._finalize(self.store.get_batch(batch["id"]), "expired")  # type: ignore[arg-type]

    def _finalize(self, batch: dict[str, Any], final: str) -> None:
        """Publish the partial files as batch_output files and set the terminal status."""
        outputs, ids = [], {}
        for name, size, kind in ((batch["out_name"], batch["out_bytes"], "output"),
                                 (batch["err_name"], batch["err_bytes"], "error")):
            part, target = self.store.partial_path(name), self.store.file_path(name)
            if part.exists():
                _truncate(part, size)
                if size:
                    os.replace(part, target)
                else:
                    part.unlink()
            if size:
                outputs.append((name, size, f"{batch['id']}_{kind}.jsonl"))
                ids[f"{kind}_file_id"] = name
        fsync_path(self.store.files_dir)
        self.store.finish_batch(batch["id"], final, outputs, **ids)
        log.info("batch %s: %s (%d completed, %d failed)", batch["id"], final,
                 batch["completed"], batch["failed"])
