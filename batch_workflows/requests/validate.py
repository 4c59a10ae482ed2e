"""Streaming validation of OpenAI-format batch request lines.

`RequestValidator` is the one place where the rules for a request line live; the CLI, the
shard writer and the local server all go through it. It is fed one line (or one parsed object)
at a time, keeps O(1) state per file apart from a bounded buffer of custom_id hashes, and
reports every problem (up to a cap) as file + 1-based line + field + reason.

Hot path: a line that is fine is parsed once with orjson and checked with a handful of dict
lookups and type tests (`_fast`). Anything unusual falls through to the slow, exhaustive check
(`_check_full`), which alone decides what the problems are.
"""

from __future__ import annotations

import heapq
import os
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import orjson

from batch_workflows.errors import ConfigurationError, InvalidInputError, Problem
from batch_workflows.profiles import CHAT, EMBEDDINGS, ProviderProfile
from batch_workflows.wire import BatchRequest

BOM = b"\xef\xbb\xbf"
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_CHUNK = 1 << 16  # bytes read per call when streaming a file
DUPLICATE_BUFFER = 1 << 18  # custom_id hashes held in memory before a run is spilled to disk
_JSONDecodeError = orjson.JSONDecodeError
_NO_LIMIT = sys.maxsize
_SPLIT_HINT = "split it with `batch-workflows shard --provider {name} --max-{what} {limit}`"


@dataclass
class ValidationReport:
    """What one validation run found.

    `lines`: lines read; `requests`: non-blank lines (the requests, when the report is ok);
    `endpoint`/`model`: the file's, from the argument or the first line that names one;
    `problems`: sorted by line, at most the cap; `truncated`: more problems were found.
    """

    source: str
    lines: int
    requests: int
    endpoint: str | None
    model: str | None
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise InvalidInputError carrying every problem found, if there is any."""
        if self.problems:
            raise InvalidInputError(self.problems, self.truncated)

    def summary(self) -> str:
        state = (
            "ok" if self.ok else f"{len(self.problems)}{'+' if self.truncated else ''} problem(s)"
        )
        return (
            f"{self.source}: {state}, {self.requests} request(s) in {self.lines} line(s), "
            f"endpoint {self.endpoint or '-'}, model {self.model or '-'}"
        )


class _Overlong(bytes):
    """Stands in for a line too long to hold in memory; `size` is its real length."""

    size: int


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def _type_name(value: object) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def iter_line_batches(f: IO[bytes], hard_limit: int) -> Iterator[list[bytes]]:
    """Lines of a binary stream, in lists, without terminators; BOM at the start dropped.

    Reads in small chunks (the lines of one chunk stay in CPU cache while they are checked).
    A line longer than `hard_limit` is never held whole: it comes out as an `_Overlong`
    carrying only its length, so a file with no newlines cannot exhaust memory. An `_Overlong`
    is only ever the first line of a list (`check_stream` relies on that).
    """
    parts: list[bytes] = []  # pieces of the line that the last chunk left unfinished
    partial = 0
    skipping = -1  # >= 0 while discarding an overlong line: bytes seen so far
    first = True
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        if first:
            first = False
            if chunk.startswith(BOM):
                chunk = chunk[3:]
        if skipping >= 0:
            cut = chunk.find(b"\n")
            if cut < 0:
                skipping += len(chunk)
                continue
            over = _Overlong()
            over.size = skipping + cut
            skipping = -1
            lines = chunk[cut + 1 :].split(b"\n")
            lines.insert(0, over)
        else:
            lines = chunk.split(b"\n")
            if len(lines) == 1:  # no newline in this chunk: all of it continues the line
                parts.append(chunk)
                partial += len(chunk)
                if partial > hard_limit:
                    skipping, parts, partial = partial, [], 0
                continue
            if parts:
                parts.append(lines[0])
                lines[0] = b"".join(parts)
        tail = lines.pop()
        parts = [tail] if tail else []
        partial = len(tail)
        yield lines
    if skipping >= 0:
        over = _Overlong()
        over.size = skipping
        yield [over]
    elif parts:
        yield [b"".join(parts)]


def _file_lines(path: str, hard_limit: int) -> Callable[[], Iterator[bytes]]:
    def lines() -> Iterator[bytes]:
        with open(path, "rb") as f:
            for batch in iter_line_batches(f, hard_limit):
                yield from batch

    return lines


class _DuplicateIndex:
    """Memory-flat duplicate detection over custom_ids.

    Keeps a 64-bit hash and the line number of every id in a bounded buffer; a full buffer is
    sorted and spilled to a temporary run file. `candidates()` merges the runs bucket by bucket
    (by the top byte of the hash) and yields groups of lines that share a hash. Without a file
    to re-read, a second, independent 64-bit hash is kept too, and groups must agree on both.
    Line numbers are kept as segments (buffer position, line) since ids mostly come from
    consecutive lines; they are expanded only when a buffer is spilled.
    """

    BUCKETS = 256

    def __init__(self, double_hash: bool, buffer_size: int | None = None):
        self.double_hash = double_hash
        self.buffer_size = buffer_size or DUPLICATE_BUFFER
        self.hashes = array("q")
        self.checks = array("q")
        self._seg_pos = array("q")  # segment i: buffer positions from _seg_pos[i] ...
        self._seg_line = array("q")  # ... hold lines _seg_line[i], _seg_line[i] + 1, ...
        fields = [("h", "<u8"), ("line", "<i8")]
        if double_hash:
            fields.insert(1, ("c", "<u8"))
        self.dtype = np.dtype(fields)
        self._runs: list[tuple[str, np.ndarray]] = []  # (path, bucket offsets)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def _segment(self, pos: int, line_no: int) -> None:
        seg_pos, seg_line = self._seg_pos, self._seg_line
        if not seg_pos or seg_line[-1] + (pos - seg_pos[-1]) != line_no:
            seg_pos.append(pos)
            seg_line.append(line_no)

    def add(self, custom_id: str, line_no: int) -> None:
        self._segment(len(self.hashes), line_no)
        self.hashes.append(hash(custom_id))
        if self.double_hash:
            self.checks.append(hash("\x00" + custom_id))
        if len(self.hashes) >= self.buffer_size:
            self.spill()

    def add_many(self, custom_ids: list[str], first_line: int) -> None:
        """Register ids found on consecutive lines starting at `first_line`."""
        self._segment(len(self.hashes), first_line)
        self.hashes.extend(map(hash, custom_ids))
        if self.double_hash:
            self.checks.extend(map(hash, map("\x00".__add__, custom_ids)))
        if len(self.hashes) >= self.buffer_size:
            self.spill()

    def _records(self) -> np.ndarray:
        n = len(self.hashes)
        rec = np.empty(n, dtype=self.dtype)
        if n:
            rec["h"] = np.frombuffer(self.hashes, dtype=np.int64).view(np.uint64)
            if self.double_hash:
                rec["c"] = np.frombuffer(self.checks, dtype=np.int64).view(np.uint64)
            pos = np.frombuffer(self._seg_pos, dtype=np.int64)
            first = np.frombuffer(self._seg_line, dtype=np.int64)
            counts = np.diff(np.append(pos, n))
            rec["line"] = np.repeat(first - pos, counts) + np.arange(n, dtype=np.int64)
            del pos, first  # views on the arrays cleared below
        del self.hashes[:], self.checks[:], self._seg_pos[:], self._seg_line[:]
        return rec

    def _bounds(self, h: np.ndarray) -> np.ndarray:
        edges = np.arange(self.BUCKETS + 1, dtype=np.uint64) << np.uint64(56)
        bounds = np.searchsorted(h, edges[:-1]).astype(np.int64)
        return np.append(bounds, len(h))

    def spill(self) -> None:
        if not self.hashes:
            return
        rec = self._records()
        rec = rec[np.argsort(rec["h"], kind="stable")]  # stable: lines stay ascending per hash
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="bw-validate-")
        path = os.path.join(self._tmpdir.name, f"run-{len(self._runs):05d}.bin")
        rec.tofile(path)
        self._runs.append((path, self._bounds(rec["h"])))

    def _groups_in(self, rec: np.ndarray) -> Iterator[list[int]]:
        """Groups of lines (ascending) sharing a hash, and the check hash where there is one."""
        if len(rec) < 2:
            return
        h = rec["h"]
        order = np.argsort(h, kind="stable")  # stable: equal hashes stay in line order
        hs = h[order]
        same = hs[1:] == hs[:-1]
        if not same.any():
            return
        # start and end (exclusive) of each run of equal hashes
        edges = np.diff(np.concatenate(([0], same.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) + 1
        lines = rec["line"]
        checks = rec["c"] if self.double_hash else None
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = order[lo:hi]
            if checks is None:
                yield sorted(int(x) for x in lines[idx])
                continue
            by_check: dict[int, list[int]] = {}
            for i in idx.tolist():
                by_check.setdefault(int(checks[i]), []).append(int(lines[i]))
            yield from (sorted(group) for group in by_check.values() if len(group) > 1)

    def candidates(self) -> Iterator[list[int]]:
        """Groups of line numbers (ascending) whose custom_ids hash alike."""
        if not self._runs:
            yield from self._groups_in(self._records())
            return
        self.spill()
        handles = [open(path, "rb") for path, _ in self._runs]  # noqa: SIM115
        try:
            item = self.dtype.itemsize
            for b in range(self.BUCKETS):
                parts = []
                for fh, (_, bounds) in zip(handles, self._runs, strict=True):
                    lo, hi = int(bounds[b]), int(bounds[b + 1])
                    if hi > lo:
                        fh.seek(lo * item)
                        parts.append(np.fromfile(fh, dtype=self.dtype, count=hi - lo))
                if parts:
                    yield from self._groups_in(np.concatenate(parts))
        finally:
            for fh in handles:
                fh.close()

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._runs = []
        del self.hashes[:], self.checks[:], self._seg_pos[:], self._seg_line[:]


def _never(obj: Any) -> None:
    return None


class RequestValidator:
    """Streaming, stateful checker of the request lines of one batch input file.

    Feed lines with `check_line` (raw bytes) or objects with `check_object`, in order, then call
    `finish()` for the report (duplicate custom_ids are settled there). `path`, when given, is
    the file being checked: suspected duplicates are then confirmed by re-reading it. `reread`
    does the same for other sources: it must give the checked lines again, in order. Without
    either, a second independent hash stands in for the confirmation.

    The profile's per-file limits (max_requests_per_file, max_bytes_per_file; bytes counted as
    each line plus its newline) make the line where one is crossed a problem; `file_limits=False`
    turns them off for a stream that is cut into files elsewhere (the shard writer).
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
            raise ConfigurationError(
                f"endpoint {endpoint!r} is not served by provider {profile.name!r}; known: {known}"
            )
        self.profile = profile
        self._endpoint: str | None = None
        self._model: str | None = None
        self.source = source
        self.max_problems = max_problems
        self.endpoint = endpoint
        self.lines = 0
        self.requests = 0
        # the kept problems as a max-heap on (line, order): (-line, -order, problem)
        self._heap: list[tuple[int, int, Problem]] = []
        self.truncated = False
        if path is not None and reread is None:
            reread = _file_lines(os.fspath(path), profile.max_line_bytes + 2)
        self._reread = reread
        self._dups = _DuplicateIndex(double_hash=reread is None)
        self._seen = 0  # problems found, including those past the cap
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
        return [item[2] for item in sorted(self._heap, reverse=True)]

    def _problem(self, line_no: int, fld: str | None, reason: str, code: str | None) -> None:
        """Record a problem; past the cap keep those with the smallest line numbers."""
        self._seen += 1
        key = (-line_no, -self._seen)
        if len(self._heap) < self.max_problems:
            heapq.heappush(self._heap, (*key, Problem(self.source, line_no, fld, reason, code)))
            return
        self.truncated = True
        # duplicates are only settled in finish(): an early one must still displace later lines
        if self._heap and key > self._heap[0][:2]:
            heapq.heapreplace(self._heap, (*key, Problem(self.source, line_no, fld, reason, code)))

    def _tally(self, line_no: int, nbytes: int, blank: bool) -> None:
        """Count one line (`nbytes` with its newline) against the per-file limits."""
        self._counted_bytes += nbytes
        name = self.profile.name
        if not blank:
            self._counted_requests += 1
            if self._counted_requests > self._requests_limit:
                limit = self._requests_limit
                self._requests_limit = _NO_LIMIT
                self._problem(
                    line_no,
                    None,
                    f"request number {limit + 1:,} is over the limit of {limit:,} requests per "
                    f"file of provider {_quote(name)}; "
                    + _SPLIT_HINT.format(name=name, what="requests", limit=limit),
                    "too_many_requests",
                )
        if self._counted_bytes > self._bytes_limit:
            limit = self._bytes_limit
            self._bytes_limit = _NO_LIMIT
            self._problem(
                line_no,
                None,
                f"the file passes the limit of {limit:,} bytes per file of provider "
                f"{_quote(name)} at this line; "
                + _SPLIT_HINT.format(name=name, what="bytes", limit=limit),
                "file_too_large",
            )

    # -- the fast path ----------------------------------------------------------------------

    def _build_fast(self) -> Callable[[Any], str | None]:
        """The fast check for the file's current endpoint and model (rebuilt when they are set).

        It returns the custom_id when `obj` is a fully valid request, and only ever says yes
        to what `_check_full` accepts; anything else gets None and the full check. A closure
        over constants, with subscripts rather than .get(): a missing key is an exception that
        costs nothing where every key is there. This is the per-line cost that counts.
        """
        endpoint, model = self._endpoint, self._model
        if endpoint is None or model is None:
            return _never  # the first lines go through the full check, which sets them
        one_model = self.profile.one_model_per_file
        kind = 1 if endpoint == CHAT else 2 if endpoint == EMBEDDINGS else 0
        roles = CHAT_ROLES

        def fast(obj: Any) -> str | None:
            if type(obj) is not dict:
                return None
            try:
                cid = obj["custom_id"]
                body = obj["body"]
                if (
                    type(cid) is not str
                    or not cid
                    or obj["method"] != "POST"
                    or obj["url"] != endpoint
                ):
                    return None
                m = body["model"]  # TypeError unless body is a mapping
                if type(m) is not str or (m != model if one_model else not m):
                    return None
                if kind == 1:
                    messages = body["messages"]
                    if type(messages) is not list or not messages:
                        return None
                    for msg in messages:
                        if type(msg["content"]) is not str:  # TypeError unless a mapping
                            return None
                        role = msg["role"]
                        # equality with the common roles is cheaper than hashing a fresh string
                        if role != "user" and role != "system" and role not in roles:
                            return None
                elif kind == 2:
                    inp = body["input"]
                    if type(inp) is str:
                        if not inp:
                            return None
                    elif type(inp) is list and inp:
                        for x in inp:
                            if type(x) is not str or not x:
                                return None
                    else:
                        return None
            except (KeyError, TypeError):
                return None
            return cid

        return fast

    @property
    def endpoint(self) -> str | None:
        """The file's endpoint: the argument, or the first valid line's url."""
        return self._endpoint

    @endpoint.setter
    def endpoint(self, value: str | None) -> None:
        self._endpoint = value
        self._fast = self._build_fast()

    @property
    def model(self) -> str | None:
        """The file's model: the first line's."""
        return self._model

    @model.setter
    def model(self, value: str | None) -> None:
        self._model = value
        self._fast = self._build_fast()

    # -- the full check ---------------------------------------------------------------------

    def _check_raw(self, raw: bytes, line_no: int) -> dict | None:
        """Every check of one raw line; the parsed object when it is a valid request."""
        if isinstance(raw, _Overlong):
            size = raw.size
        else:
            size = len(raw) - (1 if raw.endswith(b"\r") else 0)
        if size > self.profile.max_line_bytes:
            self._problem(
                line_no,
                None,
                f"line is {size:,} bytes, over the provider limit of "
                f"{self.profile.max_line_bytes:,} bytes",
                "line_too_long",
            )
            return None
        if not raw.strip():
            self._blank += 1
            self._problem(line_no, None, "blank line", "blank_line")
            return None
        try:
            obj = orjson.loads(raw)
        except _JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                self._problem(
                    line_no, None, f"not valid UTF-8 (byte {uexc.start + 1})", "invalid_utf8"
                )
                return None
            self._problem(line_no, None, f"not valid JSON: {exc}", "invalid_json")
            return None
        return obj if self._check_full(obj, line_no, size) else None

    def _check_full(self, obj: Any, line_no: int, size: int | None) -> bool:
        """Every rule for one parsed line; records its problems; True when there are none."""
        seen = self._seen

        if size is not None and size > self.profile.max_line_bytes:
            self._problem(
                line_no,
                None,
                f"line is {size:,} bytes, over the provider limit of "
                f"{self.profile.max_line_bytes:,} bytes",
                "line_too_long",
            )
        if not isinstance(obj, dict):
            self._problem(
                line_no, None, f"not a JSON object (got {_type_name(obj)})", "not_object"
            )
            return False
        p = self._problem

        cid = obj.get("custom_id")
        if "custom_id" not in obj or cid is None:
            p(line_no, "custom_id", "missing", "missing_custom_id")
        elif type(cid) is not str:
            p(line_no, "custom_id", f"must be a string (got {_type_name(cid)})", "invalid_custom_id")
        elif not cid:
            p(line_no, "custom_id", "must not be empty", "invalid_custom_id")
        else:
            self._dups.add(cid, line_no)

        method = obj.get("method")
        if method is None:
            p(line_no, "method", 'missing (must be "POST")', "invalid_method")
        elif method != "POST":
            p(line_no, "method", f'must be "POST" (got {_quote(method)})', "invalid_method")

        url = obj.get("url")
        line_endpoint: str | None = None
        if url is None:
            p(line_no, "url", "missing", "missing_url")
        elif type(url) is not str:
            p(line_no, "url", f"must be a string (got {_type_name(url)})", "invalid_url")
        elif url not in self.profile.endpoints:
            known = ", ".join(sorted(self.profile.endpoints))
            p(
                line_no,
                "url",
                f"{_quote(url)} is not an endpoint of provider {_quote(self.profile.name)} "
                f"(expected one of: {known})",
                # with the file's endpoint fixed, any other url is a mismatch with it
                "invalid_url" if self.endpoint is None else "mismatched_endpoint",
            )
        elif self.endpoint is None:
            self.endpoint = line_endpoint = url
        else:
            line_endpoint = url  # its body is checked against its own endpoint either way
            if url != self.endpoint:
                p(
                    line_no,
                    "url",
                    f"{_quote(url)} differs from the file's endpoint {_quote(self.endpoint)}",
                    "mismatched_endpoint",
                )

        body = obj.get("body")
        if body is None:
            p(line_no, "body", "missing", "missing_body")
        elif not isinstance(body, dict):
            p(line_no, "body", f"must be an object (got {_type_name(body)})", "invalid_body")
        else:
            model = body.get("model")
            if model is None:
                p(line_no, "body.model", "missing", "missing_model")
            elif type(model) is not str or not model:
                p(
                    line_no,
                    "body.model",
                    f"must be a non-empty string (got {_quote(model)})",
                    "invalid_model",
                )
            elif self.model is None:
                self.model = model
            elif model != self.model and self.profile.one_model_per_file:
                p(
                    line_no,
                    "body.model",
                    f"{_quote(model)} differs from the file's model {_quote(self.model)} "
                    f"(provider {_quote(self.profile.name)} takes one model per file)",
                    "mismatched_model",
                )
            if line_endpoint == CHAT:
                self._check_chat(body, line_no)
            elif line_endpoint == EMBEDDINGS:
                self._check_embeddings(body, line_no)
        return self._seen == seen

    def _check_chat(self, body: dict, line_no: int) -> None:
        def p(line_no: int, fld: str, reason: str, code: str = "invalid_messages") -> None:
            self._problem(line_no, fld, reason, code)

        messages = body.get("messages")
        if messages is None:
            p(line_no, "body.messages", "missing", "missing_messages")
            return
        if type(messages) is not list:
            p(line_no, "body.messages", f"must be a list of messages (got {_type_name(messages)})")
            return
        if not messages:
            p(line_no, "body.messages", "must not be empty")
            return
        for i, m in enumerate(messages):
            where = f"body.messages[{i}]"
            if not isinstance(m, dict):
                p(line_no, where, f"must be an object (got {_type_name(m)})")
                continue
            role = m.get("role")
            if role is None:
                p(line_no, f"{where}.role", "missing")
            elif type(role) is not str:
                p(line_no, f"{where}.role", f"must be a string (got {_type_name(role)})")
            elif role not in CHAT_ROLES:
                known = ", ".join(sorted(CHAT_ROLES))
                p(
                    line_no,
                    f"{where}.role",
                    f"unknown role {_quote(role)} (expected one of: {known})",
                )
            content = m.get("content")
            if content is None:
                calls = m.get("tool_calls") or m.get("function_call")
                if not (role == "assistant" and calls):
                    p(line_no, f"{where}.content", "missing")
            elif type(content) is str:
                pass
            elif type(content) is list:
                if not content:
                    p(line_no, f"{where}.content", "must not be an empty list")
                for j, part in enumerate(content):
                    if type(part) is not dict or type(part.get("type")) is not str:
                        p(
                            line_no,
                            f"{where}.content[{j}]",
                            'must be a content part: an object with a string "type"',
                        )
            else:
                p(
                    line_no,
                    f"{where}.content",
                    f"must be a string or a list of content parts (got {_type_name(content)})",
                )

    def _check_embeddings(self, body: dict, line_no: int) -> None:
        def p(line_no: int, fld: str, reason: str, code: str = "invalid_input") -> None:
            self._problem(line_no, fld, reason, code)

        inp = body.get("input")
        shape = "must be a non-empty string, a list of non-empty strings, or token arrays"
        if inp is None:
            p(line_no, "body.input", "missing", "missing_input")
        elif type(inp) is str:
            if not inp:
                p(line_no, "body.input", "must not be empty")
        elif type(inp) is not list:
            p(line_no, "body.input", f"{shape} (got {_type_name(inp)})")
        elif not inp:
            p(line_no, "body.input", "must not be empty")
        elif all(type(x) is int for x in inp):
            pass  # one token array
        else:
            for j, x in enumerate(inp):
                if type(x) is str:
                    ok = bool(x)
                elif type(x) is list:
                    ok = bool(x) and all(type(t) is int for t in x)
                else:
                    ok = False
                if not ok:
                    if (type(x) is str or type(x) is list) and not x:
                        p(line_no, f"body.input[{j}]", "must not be empty")
                    else:
                        p(line_no, f"body.input[{j}]", shape.replace("must be", "items must be"))
                    break

    # -- public feeding API -----------------------------------------------------------------

    def check_line(self, raw: bytes, line_no: int) -> dict | None:
        """Check one raw line (terminator optional); the parsed object when it is valid."""
        self.lines = max(self.lines, line_no)
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[3:]
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        size = raw.size if type(raw) is _Overlong else len(raw)
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
            if type(head) is _Overlong:
                size += head.size
            if (
                self._counted_bytes + size > self._bytes_limit
                or line_no - self._blank > self._requests_limit
            ):
                self._counted_requests = first - 1 - blank
                for i, raw in enumerate(batch):
                    over = type(raw) is _Overlong
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
            self._problem(
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
            groups = self._confirm(self._dups.candidates())
        else:  # two independent 64-bit hashes agree: a duplicate beyond reasonable doubt
            groups = ((None, lines) for lines in self._dups.candidates())
        for cid, lines in groups:
            what = "custom_id" if cid is None else f"custom_id {_quote(cid)}"
            first = lines[0]
            for line_no in lines[1:]:
                self._problem(
                    line_no,
                    "custom_id",
                    f"duplicate {what} (first used on line {first})",
                    "duplicate_custom_id",
                )

    def _confirm(self, groups: Iterable[list[int]]) -> list[tuple[str | None, list[int]]]:
        """Re-read the file to keep only lines whose custom_ids are really equal.

        At most `budget` line numbers are held. Past it the groups whose first repeat comes
        latest are dropped, so that the problems kept are still the earliest ones.
        """
        budget = max(10_000, 10 * self.max_problems)  # bounds memory on absurd inputs
        per_group = max(2, self.max_problems + 1)  # no group shows more problems than the cap
        kept: list[tuple[int, int, list[int]]] = []  # max-heap on the first repeat's line
        held = 0
        for seq, lines in enumerate(groups):
            if len(lines) > per_group:
                lines = lines[:per_group]
                self.truncated = True
            heapq.heappush(kept, (-lines[1], seq, lines))
            held += len(lines)
            while held > budget:
                held -= len(heapq.heappop(kept)[2])
                self.truncated = True
        hashed = [lines for _, _, lines in kept]
        wanted = {line for lines in hashed for line in lines}
        if not wanted:
            return []
        ids: dict[int, str] = {}
        assert self._reread is not None
        for line_no, raw in enumerate(self._reread(), 1):
            if line_no in wanted:
                obj = orjson.loads(raw)
                if type(obj) is dict and type(obj.get("custom_id")) is str:
                    ids[line_no] = obj["custom_id"]
        real: list[tuple[str | None, list[int]]] = []
        for lines in hashed:
            by_id: dict[str, list[int]] = {}
            for line_no in lines:
                if line_no in ids:
                    by_id.setdefault(ids[line_no], []).append(line_no)
            real.extend((cid, same) for cid, same in by_id.items() if len(same) > 1)
        return real


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
            validator.lines = line_no
            validator._problem(
                line_no, None, f"cannot be written as JSON: {exc}", "invalid_json"
            )
            validator._tally(line_no, 0, False)
            continue
        validator.check_object(obj, line_no, size)
    return validator.finish()
