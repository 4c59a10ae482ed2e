"""Is a JSONL file a supervised fine-tuning dataset that fine-tuning APIs accept? The rules, one
line at a time (used by the dataset's asset check and by ``batch-workflows sft-check``).

Chat lines (``{"messages": [...]}``) — OpenAI's fine-tuning data-preparation rules:

* the line is UTF-8 JSON, an object whose only key is ``messages`` (no blank lines);
* ``messages`` is a non-empty list; every message an object with ``role`` and ``content`` and
  no keys but ``role``, ``content``, ``name``, ``weight``;
* ``role`` is ``system``, ``user`` or ``assistant``; ``content`` a non-empty string;
* at least one assistant message;

and the stricter providers' (chat templates that require strict turns):

* the first message is the system's or the user's, and a system message only comes first;
* after it, user and assistant alternate, starting with the user; the last message is the
  assistant's;
* ``weight`` only on assistant messages, and 0 or 1.

Prompt-completion lines (``{"prompt": ..., "completion": ...}``): exactly those two keys, each a
non-empty string. A file holds one format throughout. OpenAI asks for at least
`MIN_EXAMPLES` examples: fewer is a warning, not a problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from batch_workflows.errors import Problem, ProblemLog

MIN_EXAMPLES = 10
ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = ("role", "content", "name", "weight")
CHAT, PROMPT_COMPLETION = "messages", "prompt_completion"

Found = Iterator[tuple[str | None, str]]  # (field, reason)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _message(i: int, m: Any) -> Found:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        yield where, "must be an object"
        return
    for key in ("role", "content"):
        if key not in m:
            yield f"{where}.{key}", "missing"
    for key in m:
        if key not in MESSAGE_KEYS:
            yield f"{where}.{key}", f"unknown message key (allowed: {', '.join(MESSAGE_KEYS)})"
    role = m.get("role")
    if "role" in m and role not in ROLES:
        yield f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}"
    if "content" in m and not _text(m["content"]):
        yield f"{where}.content", "must be a non-empty string"
    if "name" in m and not isinstance(m["name"], str):
        yield f"{where}.name", "must be a string"
    if "weight" in m:
        if role != "assistant":
            yield f"{where}.weight", "only assistant messages may carry a weight"
        elif isinstance(m["weight"], bool) or m["weight"] not in (0, 1):
            yield f"{where}.weight", f"must be 0 or 1, got {m['weight']!r}"


def _turns(roles: list[Any]) -> Found:
    """The stricter providers' order: [system], user, assistant, user, ..., assistant."""
    if roles[0] not in ("system", "user"):
        yield "messages[0].role", f"the first message must be system or user, got {roles[0]!r}"
        return
    turns = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(turns):
        at = i + (len(roles) - len(turns))
        want = "user" if i % 2 == 0 else "assistant"
        if role != want:
            yield f"messages[{at}].role", f"expected {want} (user and assistant alternate " \
                                          f"after an optional first system message), got {role!r}"
            return
    if roles[-1] != "assistant":
        yield f"messages[{len(roles) - 1}].role", "the last message must be the assistant's"


def check_chat(obj: dict[str, Any]) -> Found:
    for key in obj:
        if key != "messages":
            yield key, "unknown top-level key (a chat example holds only 'messages')"
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        yield "messages", "must be a non-empty list"
        return
    bad = False
    for i, m in enumerate(messages):
        for problem in _message(i, m):
            bad = True
            yield problem
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if "assistant" not in roles:
        yield "messages", "no assistant message"
    elif not bad:
        yield from _turns(roles)


def check_prompt_completion(obj: dict[str, Any]) -> Found:
    for key in obj:
        if key not in ("prompt", "completion"):
            yield key, "unknown top-level key (a prompt-completion example holds only "\
                       "'prompt' and 'completion')"
    for key in ("prompt", "completion"):
        if key not in obj:
            yield key, "missing"
        elif not _text(obj[key]):
            yield key, "must be a non-empty string"


def format_of(obj: dict[str, Any]) -> str | None:
    if "messages" in obj:
        return CHAT
    if "prompt" in obj or "completion" in obj:
        return PROMPT_COMPLETION
    return None


@dataclass
class SftReport:
    """What checking one file found."""

    path: str
    examples: int = 0  # lines that are JSON objects
    format: str | None = None
    problems: list[Problem] = field(default_factory=list)
    found: int = 0  # every problem, also those past the cap
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.found

    @property
    def warnings(self) -> list[str]:
        if self.examples < MIN_EXAMPLES:
            return [f"{self.path}: {self.examples} example(s); OpenAI's fine-tuning needs at "
                    f"least {MIN_EXAMPLES}"]
        return []

    def summary(self) -> str:
        state = "valid" if self.ok else f"{self.found} problem(s)"
        return f"{self.path}: {self.examples} example(s), {self.format or 'no'} format, {state}"


def check_lines(lines: Iterable[bytes], source: str, max_problems: int = 100) -> SftReport:
    """Check the raw lines of one file (newlines kept)."""
    log = ProblemLog(source, max_problems)
    report = SftReport(source)
    for n, raw in enumerate(lines, start=1):
        text = raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw
        if not text.strip():  # the newline ending the last line is not a blank line
            log.add(n, None, "blank line")
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            log.add(n, None, "not UTF-8" if "utf-8" in str(exc).lower() else
                    f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            log.add(n, None, "line is not a JSON object")
            continue
        report.examples += 1
        kind = format_of(obj)
        if kind is None:
            log.add(n, None, "neither a chat example ('messages') nor a prompt-completion one")
            continue
        if report.format is None:
            report.format = kind
        elif kind != report.format:
            log.add(n, None, f"{kind} example in a {report.format} file (one format per file)")
            continue
        for where, reason in (check_chat(obj) if kind == CHAT else check_prompt_completion(obj)):
            log.add(n, where, reason)
    report.problems, report.found, report.truncated = log.problems, log.found, log.truncated
    return report


def check_file(path: str, max_problems: int = 100) -> SftReport:
    with open(path, "rb") as fh:
        return check_lines(fh, path, max_problems)
