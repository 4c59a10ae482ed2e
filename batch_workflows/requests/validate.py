"""Streaming validation of OpenAI-format batch request lines.

`RequestValidator` is the one place where the rules for a request line live; the CLI, the
shard writer and the local server all go through it. It is fed one line (or one parsed object)
at a time, keeps O(1) state per file apart from a bounded buffer of custom_id hashes, and
reports every problem (up to a cap) as FILE:LINE: FIELD: REASON.

Hot path: a line that is fine is parsed once with orjson and accepted by the fast check
(`fast_check.py`). Anything unusual falls through to the slow, exhaustive check
(`_check_full`, with the endpoint's body rules from `body_rules.py`), which alone decides what
the problems are. Duplicate custom_ids are settled at the end (`duplicates.py`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from functools import partial
from typing import IO, Any

import orjson

from batch_workflows.errors import ConfigurationError, Problem, ProblemLog
from batch_workflows.profiles import ProviderProfile
from batch_workflows.requests.body_rules import check_body, check_messages_body
from batch_workflows.requests.describe import json_type, quote
from batch_workflows.requests.duplicates import DuplicateIndex, confirm_duplicates
from batch_workflows.requests.fast_check import FastCheck, build_fast_check
from batch_workflows.requests.lines import BOM, OverlongLine, file_lines, iter_line_batches
from batch_workflows.requests.report import ValidationReport
from batch_workflows.wire import BatchRequest

_JSONDecodeError = orjson.JSONDecodeError
_NO_LIMIT = sys.maxsize
_SPLIT_HINT = "split it with `batch-workflows shard --provider {name} --max-{what} {limit}`"


class RequestValidator:
    """Streaming, stateful checker of the request lines of one batch input file.

    Feed lines with `check_line` (raw bytes), a stream with `check_stream`, or objects with
    `check_object`, in order, then call `finish()` for the report (duplicate custom_ids are
    settled there). `path`, when given, is the file being checked: suspected duplicates are
    then confirmed by re-reading it. `reread` does the same for other sources: it must give
    the checked lines again, in order. Without either, a second independent hash stands in for
    the confirmation.

    The profile's per-file limits (max_requests_per_file, max_bytes_per_file; bytes counted as
    each line plus its newline) make the line where one is crossed a problem; `file_limits=False`
    turns them off for a stream that is cut into files elsewhere (the shard writer).

    A caller with its own hot loop (the shard writer) can use the fast check directly: call
    `fast_check` on each parsed line, `check_object` on the lines it does not accept (then
    fetch `fast_check` again: the full check may have fixed the file's endpoint or model),
    register the custom_ids it returned with `add_valid_ids`, report what cannot be serialised
    with `check_unwritable` and its own problems with `add_problem`, and set `lines` before
    `finish()`.
    """

    def __init__(
        self,
        profile: ProviderProfile,
        endpoint: str | None = None,
        source: str = "<requests>",
        max_problems: int = 100,
        *,
        path: str | os.PathLike[str] | None = None,
        reread: Callable[[], Iterable[bytes]] | None = None,
        file_limits: bool = True,
    ):
        if endpoint is not None and endpoint not in profile.endpoints:
            known = ", ".join(sorted(profile.endpoints))
            note = profile.endpoint_notes.get(endpoint)
            raise ConfigurationError(
                f"endpoint {endpoint!r} is not served by provider {profile.name!r}; known: {known}"
                + (f": {note}" if note else "")
            )
        self.profile = profile
        self._endpoint: str | None = None
        self._model: str | None = None
        self.source = source
        self.max_problems = max_problems
        self.endpoint = endpoint
        self.lines = 0
        self.requests = 0
        self._log = ProblemLog(source, max_problems)
        if path is not None and reread is None:
            reread = file_lines(os.fspath(path), profile.max_line_bytes + 2)
        self._reread = reread
        self._dups = DuplicateIndex(double_hash=reread is None)
        self._blank = 0
        self._finished: ValidationReport | None = None
        # per-file limits; each is set to _NO_LIMIT once reported, so it is reported once
        self._requests_limit = profile.max_requests_per_file if file_limits else _NO_LIMIT
        self._bytes_limit = profile.max_bytes_per_file if file_limits else _NO_LIMIT
        self._counted_requests = 0  # non-blank lines counted against the limits so far
        self._counted_bytes = 0

    # -- problems ---------------------------------------------------------------------------

    @property
    def problems(self) -> list[Problem]:
        """The problems kept so far, by line (ties in the order found)."""
        return self._log.problems

    @property
    def truncated(self) -> bool:
        """More problems were found than the cap keeps."""
        return self._log.truncated

    def add_problem(self, line_no: int, fld: str | None, reason: str, code: str | None) -> None:
        """Record a problem; past the cap keep those with the smallest line numbers."""
        self._log.add(line_no, fld, reason, code)

    def _tally(self, line_no: int, nbytes: int, blank: bool) -> None:
        """Count one line (`nbytes` with its newline) against the per-file limits."""
        self._counted_bytes += nbytes
        name = self.profile.name
        if not blank:
            self._counted_requests += 1
            if self._counted_requests > self._requests_limit:
                limit = self._requests_limit
                self._requests_limit = _NO_LIMIT
                self.add_problem(
                    line_no,
                    None,
                    f"request number {limit + 1:,} is over the limit of {limit:,} requests per "
                    f"file of provider {quote(name)}; "
                    + _SPLIT_HINT.format(name=name, what="requests", limit=limit),
                    "too_many_requests",
                )
        if self._counted_bytes > self._bytes_limit:
            limit = self._bytes_limit
            self._bytes_limit = _NO_LIMIT
            self.add_problem(
                line_no,
                None,
                f"the file passes the limit of {limit:,} bytes per file of provider "
                f"{quote(name)} at this line; "
                + _SPLIT_HINT.format(name=name, what="bytes", limit=limit),
                "file_too_large",
            )

    # -- the file's endpoint and model, and the fast check built for them --------------------

    @property
    def endpoint(self) -> str | None:
        """The file's endpoint: the argument, or the first valid line's url."""
        return self._endpoint

    @endpoint.setter
    def endpoint(self, value: str | None) -> None:
        self._endpoint = value
        self._fast = build_fast_check(self.profile, self._endpoint, self._model)

    @property
    def model(self) -> str | None:
        """The file's model: the first line's."""
        return self._model

    @model.setter
    def model(self, value: str | None) -> None:
        self._model = value
        self._fast = build_fast_check(self.profile, self._endpoint, self._model)

    @property
    def fast_check(self) -> FastCheck:
        """The fast check for the file's endpoint and model as now known: a parsed line ->
        its custom_id when it is a fully valid request, else None (then `check_object` it).
        It changes when a full check fixes the endpoint or model."""
        return self._fast

    def add_valid_ids(self, custom_ids: list[str], first_line: int) -> None:
        """Register the custom_ids that `fast_check` returned for consecutive lines from
        `first_line` (the full checks register their own)."""
        self._dups.add_many(custom_ids, first_line)

    # -- the full check ---------------------------------------------------------------------

    def _check_raw(self, raw: bytes, line_no: int) -> dict | None:
        """Every check of one raw line; the parsed object when it is a valid request."""
        if isinstance(raw, OverlongLine):
            size = raw.size
        else:
            size = len(raw) - (1 if raw.endswith(b"\r") else 0)
        if size > self.profile.max_line_bytes:
            self._line_too_long(line_no, size)
            return None
        if not raw.strip():
            self._blank += 1
            self.add_problem(line_no, None, "blank line", "blank_line")
            return None
        try:
            obj = orjson.loads(raw)
        except _JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                self.add_problem(
                    line_no, None, f"not valid UTF-8 (byte {uexc.start + 1})", "invalid_utf8"
                )
                return None
            self.add_problem(line_no, None, f"not valid JSON: {exc}", "invalid_json")
            return None
        return obj if self._check_full(obj, line_no, size) else None

    def _line_too_long(self, line_no: int, size: int) -> None:
        self.add_problem(
            line_no,
            None,
            f"line is {size:,} bytes, over the provider limit of "
            f"{self.profile.max_line_bytes:,} bytes",
            "line_too_long",
        )

    def _check_full(self, obj: Any, line_no: int, size: int | None) -> bool:
        """Every rule for one parsed line; records its problems; True when there are none."""
        found = self._log.found

        if size is not None and size > self.profile.max_line_bytes:
            self._line_too_long(line_no, size)
        if not isinstance(obj, dict):
            self.add_problem(
                line_no, None, f"not a JSON object (got {json_type(obj)})", "not_object"
            )
            return False
        p = self.add_problem

        cid = obj.get("custom_id")
        if "custom_id" not in obj or cid is None:
            p(line_no, "custom_id", "missing", "missing_custom_id")
        elif type(cid) is not str:
            p(line_no, "custom_id", f"must be a string (got {json_type(cid)})", "invalid_custom_id")
        elif not cid:
            p(line_no, "custom_id", "must not be empty", "invalid_custom_id")
        else:
            self._dups.add(cid, line_no)

        method = obj.get("method")
        if method is None:
            p(line_no, "method", 'missing (must be "POST")', "invalid_method")
        elif method != "POST":
            p(line_no, "method", f'must be "POST" (got {quote(method)})', "invalid_method")

        line_endpoint = self._check_url(obj.get("url"), line_no)

        body = obj.get("body")
        if body is None:
            p(line_no, "body", "missing", "missing_body")
        elif not isinstance(body, dict):
            p(line_no, "body", f"must be an object (got {json_type(body)})", "invalid_body")
        else:
            self._check_model(body.get("model"), line_no)
            check_body(line_endpoint, body, partial(self.add_problem, line_no))
            if self.profile.api == "anthropic" and line_endpoint is not None:
                check_messages_body(body, partial(self.add_problem, line_no))
        return self._log.found == found

    def _check_url(self, url: object, line_no: int) -> str | None:
        """Check the url (and fix the file's endpoint from the first good one); the line's
        endpoint when it is one of the provider's, which its body is checked against."""
        p = self.add_problem
        if url is None:
            p(line_no, "url", "missing", "missing_url")
        elif type(url) is not str:
            p(line_no, "url", f"must be a string (got {json_type(url)})", "invalid_url")
        elif url not in self.profile.endpoints:
            known = ", ".join(sorted(self.profile.endpoints))
            note = self.profile.endpoint_notes.get(url)
            p(
                line_no,
                "url",
                f"{quote(url)} is not an endpoint of provider {quote(self.profile.name)} "
                f"(expected one of: {known})" + (f": {note}" if note else ""),
                # with the file's endpoint fixed, any other url is a mismatch with it
                "invalid_url" if self.endpoint is None else "mismatched_endpoint",
            )
        elif self.endpoint is None:
            self.endpoint = url
            return url
        else:
            if url != self.endpoint:
                p(
                    line_no,
                    "url",
                    f"{quote(url)} differs from the file's endpoint {quote(self.endpoint)}",
                    "mismatched_endpoint",
                )
            return url  # its body is checked against its own endpoint either way
        return None

    def _check_model(self, model: object, line_no: int) -> None:
        """Check body.model (and fix the file's model from the first good one)."""
        p = self.add_problem
        if model is None:
            p(line_no, "body.model", "missing", "missing_model")
        elif type(model) is not str or not model:
            p(
                line_no,
                "body.model",
                f"must be a non-empty string (got {quote(model)})",
                "invalid_model",
            )
        elif self.model is None:
            self.model = model
        elif model != self.model and self.profile.one_model_per_file:
            p(
                line_no,
                "body.model",
                f"{quote(model)} differs from the file's model {quote(self.model)} "
                f"(provider {quote(self.profile.name)} takes one model per file)",
                "mismatched_model",
            )

    # -- feeding ----------------------------------------------------------------------------

    def check_line(self, raw: bytes, line_no: int) -> dict | None:
        """Check one raw line (terminator optional); the parsed object when it is valid."""
        self.lines = max(self.lines, line_no)
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[3:]
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        size = raw.size if type(raw) is OverlongLine else len(raw)
        if size <= self.profile.max_line_bytes:
            try:
                obj = orjson.loads(raw)
            except _JSONDecodeError:
                pass
            else:
                cid = self._fast(obj)
                if cid is not None:
                    self._dups.add(cid, line_no)
                    self._tally(line_no, size + 1, False)
                    return obj
        blank = self._blank
        valid = self._check_raw(raw, line_no)
        self._tally(line_no, size + 1, self._blank != blank)
        return valid

    def check_object(self, obj: object, line_no: int, size: int | None = None) -> bool:
        """Check one already-parsed request (`size`: its serialised length, for the line limit)."""
        self.lines = max(self.lines, line_no)
        if isinstance(obj, BatchRequest):
            obj = obj.model_dump()
        self._tally(line_no, 0 if size is None else size + 1, False)
        if size is None or size <= self.profile.max_line_bytes:
            cid = self._fast(obj)
            if cid is not None:
                self._dups.add(cid, line_no)
                return True
        return self._check_full(obj, line_no, size)

    def check_unwritable(self, line_no: int, exc: TypeError) -> None:
        """Count a request that orjson cannot serialise (`exc`, from `orjson.dumps`) as a
        line, and report it."""
        self.lines = max(self.lines, line_no)
        self.add_problem(line_no, None, f"cannot be written as JSON: {exc}", "invalid_json")
        self._tally(line_no, 0, False)

    def check_stream(self, f: IO[bytes]) -> None:
        """Check every line of a binary stream (the hot loop behind `validate_file`).

        Per line: one orjson parse and the fast check. The ids of good lines are gathered per
        read chunk and hashed in one C-level pass (`add_many`); the per-file limits are counted
        per chunk too, and only a chunk that crosses one is walked line by line.
        """
        loads = orjson.loads
        fast = self._fast
        dups = self._dups
        slow = self._check_raw
        maxlen = self.profile.max_line_bytes
        line_no = self.lines
        for batch in iter_line_batches(f, maxlen + 2):
            first = line_no + 1
            blank = self._blank
            cids: list[str | None] = []
            keep = cids.append
            short = max(map(len, batch)) <= maxlen
            for raw in batch:
                line_no += 1
                if short or len(raw) <= maxlen:
                    try:
                        obj = loads(raw)
                    except _JSONDecodeError:
                        pass
                    else:
                        cid = fast(obj)
                        if cid is not None:
                            keep(cid)
                            continue
                keep(None)  # keeps positions; the full check registers its own id
                slow(raw, line_no)
                fast = self._fast  # the full check may have fixed the endpoint or model
            if None in cids:
                for i, cid in enumerate(cids):
                    if cid is not None:
                        dups.add(cid, first + i)
            else:
                dups.add_many(cids, first)  # type: ignore[arg-type]
            size = sum(map(len, batch)) + len(batch)
            head = batch[0]
            if type(head) is OverlongLine:
                size += head.size
            if (
                self._counted_bytes + size > self._bytes_limit
                or line_no - self._blank > self._requests_limit
            ):
                self._counted_requests = first - 1 - blank
                for i, raw in enumerate(batch):
                    over = type(raw) is OverlongLine
                    n = raw.size if over else len(raw)
                    self._tally(first + i, n + 1, not over and not raw.strip())
            else:
                self._counted_bytes += size
                self._counted_requests = line_no - self._blank
        self.lines = line_no

    # -- the end ----------------------------------------------------------------------------

    def finish(self) -> ValidationReport:
        """Settle duplicate custom_ids and return the report (idempotent)."""
        if self._finished is not None:
            return self._finished
        try:
            self._report_duplicates()
        finally:
            self._dups.close()
        if self.lines - self._blank == 0:
            self.add_problem(
                max(self.lines, 1),
                None,
                "no requests: the file holds no request line",
                "empty_file",
            )
        self.requests = self.lines - self._blank
        self._finished = ValidationReport(
            source=self.source,
            lines=self.lines,
            requests=self.requests,
            endpoint=self.endpoint,
            model=self.model,
            problems=self.problems,  # sorted by line
            truncated=self.truncated,
        )
        return self._finished

    def _report_duplicates(self) -> None:
        groups: Iterable[tuple[str | None, list[int]]]
        if self._reread is not None:
            groups, truncated = confirm_duplicates(
                self._dups.candidates(), self._reread, self.max_problems
            )
            self._log.truncated |= truncated
        else:  # two independent 64-bit hashes agree: a duplicate beyond reasonable doubt
            groups = ((None, lines) for lines in self._dups.candidates())
        for cid, lines in groups:
            what = "custom_id" if cid is None else f"custom_id {quote(cid)}"
            first = lines[0]
            for line_no in lines[1:]:
                self.add_problem(
                    line_no,
                    "custom_id",
                    f"duplicate {what} (first used on line {first})",
                    "duplicate_custom_id",
                )


def validate_file(
    path: str | os.PathLike[str],
    profile: ProviderProfile,
    endpoint: str | None = None,
    max_problems: int = 100,
    *,
    file_limits: bool = True,
) -> ValidationReport:
    """Validate a JSONL batch input file, streaming. OSError if it cannot be read.

    `file_limits=False` skips the per-file request and byte limits (for input to be sharded).
    """
    source = os.fspath(path)
    validator = RequestValidator(
        profile, endpoint, source, max_problems, path=source, file_limits=file_limits
    )
    with open(source, "rb") as f:
        validator.check_stream(f)
    return validator.finish()


def validate_requests(
    requests: Iterable[dict | BatchRequest],
    profile: ProviderProfile,
    endpoint: str | None = None,
    source: str = "<requests>",
    max_problems: int = 100,
) -> ValidationReport:
    """Validate requests held in memory or streamed from an iterator (line = 1-based index)."""
    validator = RequestValidator(profile, endpoint, source, max_problems)
    dumps = orjson.dumps
    for line_no, request in enumerate(requests, 1):
        obj = request.model_dump() if isinstance(request, BatchRequest) else request
        try:
            size = len(dumps(obj))
        except TypeError as exc:
            validator.check_unwritable(line_no, exc)
            continue
        validator.check_object(obj, line_no, size)
    return validator.finish()
