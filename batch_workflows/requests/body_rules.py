"""The rules for a request's `body` that depend on its endpoint (chat, embeddings).

Each check calls `report(field, reason, code)` once per problem it finds; the validator binds
`report` to the line being checked. The model and the other endpoint-independent fields are
the validator's rules, not these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch_workflows.anthropic_batches.wire import TranslationError, chat_to_messages
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.requests.describe import json_type, quote

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

Report = Callable[[str, str, str], None]  # (field, reason, code)


def check_body(endpoint: str | None, body: dict[str, Any], report: Report) -> None:
    """Check `body` against the rules of `endpoint` (none for an endpoint without rules)."""
    if endpoint == CHAT:
        check_chat_body(body, report)
    elif endpoint == EMBEDDINGS:
        check_embeddings_body(body, report)


def check_chat_body(body: dict[str, Any], report: Report) -> None:
    """`messages`: a non-empty list of {role, content}; content a string or content parts."""

    def p(fld: str, reason: str, code: str = "invalid_messages") -> None:
        report(fld, reason, code)

    messages = body.get("messages")
    if messages is None:
        p("body.messages", "missing", "missing_messages")
        return
    if type(messages) is not list:
        p("body.messages", f"must be a list of messages (got {json_type(messages)})")
        return
    if not messages:
        p("body.messages", "must not be empty")
        return
    for i, m in enumerate(messages):
        where = f"body.messages[{i}]"
        if not isinstance(m, dict):
            p(where, f"must be an object (got {json_type(m)})")
            continue
        role = m.get("role")
        if role is None:
            p(f"{where}.role", "missing")
        elif type(role) is not str:
            p(f"{where}.role", f"must be a string (got {json_type(role)})")
        elif role not in CHAT_ROLES:
            known = ", ".join(sorted(CHAT_ROLES))
            p(f"{where}.role", f"unknown role {quote(role)} (expected one of: {known})")
        content = m.get("content")
        if content is None:
            calls = m.get("tool_calls") or m.get("function_call")
            if not (role == "assistant" and calls):
                p(f"{where}.content", "missing")
        elif type(content) is str:
            pass
        elif type(content) is list:
            if not content:
                p(f"{where}.content", "must not be an empty list")
            for j, part in enumerate(content):
                if type(part) is not dict or type(part.get("type")) is not str:
                    p(
                        f"{where}.content[{j}]",
                        'must be a content part: an object with a string "type"',
                    )
        else:
            p(
                f"{where}.content",
                f"must be a string or a list of content parts (got {json_type(content)})",
            )


def check_embeddings_body(body: dict[str, Any], report: Report) -> None:
    """`input`: a non-empty string, a list of non-empty strings, or token arrays."""

    def p(fld: str, reason: str, code: str = "invalid_input") -> None:
        report(fld, reason, code)

    inp = body.get("input")
    shape = "must be a non-empty string, a list of non-empty strings, or token arrays"
    if inp is None:
        p("body.input", "missing", "missing_input")
    elif type(inp) is str:
        if not inp:
            p("body.input", "must not be empty")
    elif type(inp) is not list:
        p("body.input", f"{shape} (got {json_type(inp)})")
    elif not inp:
        p("body.input", "must not be empty")
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
                    p(f"body.input[{j}]", "must not be empty")
                else:
                    p(f"body.input[{j}]", shape.replace("must be", "items must be"))
                break


def check_messages_body(body: dict[str, Any], report: Report) -> None:
    """A chat body that must become Anthropic Messages params: every field mapped or refused
    (`anthropic_batches.wire.chat_to_messages`), so nothing unsayable is sent."""
    try:
        chat_to_messages(body)
    except TranslationError as exc:
        report(f"body.{exc.param}", str(exc).split(": ", 1)[-1], "unsupported_parameter")
