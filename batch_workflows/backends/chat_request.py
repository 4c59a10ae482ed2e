"""The whole `CreateChatCompletionRequest` of OpenAI's published schema, parsed for a local model.

`null` means absent, as clients such as distilabel send it. Every parameter of the schema is
known: the ones this engine honours are parsed into a `ChatRequest`; the ones with no effect on
the output (bookkeeping such as `metadata`, `store`, `prompt_cache_key`, or `prediction`, which
only speeds generation up) are accepted; a value the engine cannot honour (tools, audio, web
search, streaming, ...) is a 400 naming the parameter. A parameter outside the schema is a 400
like OpenAI's "Unrecognized request argument supplied".

The parameter list is that of openai/openai-openapi `openapi.yaml` at commit f85dbe22 (spec
2.3.0); tests/data/openai-chat-request-schema.json holds the schema and a test checks the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from batch_workflows.backends.base import BackendResult, check_common, invalid_request

# Honoured: they change what is generated.
HONOURED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
    "stop", "n", "logprobs", "top_logprobs", "logit_bias", "frequency_penalty",
    "presence_penalty", "response_format",
})  # fmt: skip
# Accepted with any value: bookkeeping for the provider, or (prediction) a speed-up only.
NO_EFFECT = frozenset({
    "metadata", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    "prompt_cache_options", "store", "service_tier", "prediction", "stream_options",
    "parallel_tool_calls",
})  # fmt: skip
# Accepted only with the values listed (null always): others ask for what a local text model
# cannot do.
LIMITED: dict[str, tuple[Any, ...]] = {
    "stream": (False,),
    "tool_choice": ("none", "auto"),  # no tools are ever offered, so "auto" calls none
    "function_call": ("none", "auto"),
    "reasoning_effort": ("none",),
    "verbosity": ("medium",),
    "modalities": (["text"],),
}
# Never honoured here: any non-null value is a 400.
UNSUPPORTED = {
    "tools": "this model cannot call tools",
    "functions": "this model cannot call functions",
    "audio": "this server generates text only",
    "web_search_options": "this server cannot search the web",
    "moderation": "this server does not run moderation on chat requests",
}
PARAMETERS = HONOURED | NO_EFFECT | set(LIMITED) | set(UNSUPPORTED)

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_N = 128
MAX_TOP_LOGPROBS = 20
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ResponseFormat:
    """A structured-output request: `json_object`, or `json_schema` with its schema."""

    type: str
    schema: dict | bool | None = None
    name: str | None = None


@dataclass
class ChatRequest:
    """One parsed request: what generation needs, defaults applied (max_tokens None: not set)."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    logit_bias: dict[int, float] = field(default_factory=dict)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    response_format: ResponseFormat | None = None


class _Invalid(Exception):
    """A parse error on its way to becoming a 400 result."""

    def __init__(self, message: str, param: str | None, code: str | None = None):
        super().__init__(message)
        self.result = invalid_request(message, param=param, code=code)


def parse_chat_request(body: Any, served: list[str]) -> ChatRequest | BackendResult:
    """A ChatRequest, or the 400/404 result to answer with."""
    model = check_common(body, PARAMETERS, served)
    if isinstance(model, BackendResult):
        return model
    present = {k: v for k, v in body.items() if v is not None}  # null means absent
    try:
        _refuse_what_cannot_be_honoured(present)
        return _parse(present, model)
    except _Invalid as exc:
        return exc.result


def _refuse_what_cannot_be_honoured(present: dict[str, Any]) -> None:
    for name, why in UNSUPPORTED.items():
        if name in present:
            raise _Invalid(
                f"'{name}' is not supported here: {why}.", name, code="unsupported_parameter"
            )
    for name, allowed in LIMITED.items():
        if name in present and present[name] not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            raise _Invalid(
                f"Unsupported value for '{name}': {present[name]!r} (this server accepts "
                f"{shown} or null).",
                name,
                code="unsupported_value",
            )


def _parse(p: dict[str, Any], model: str) -> ChatRequest:
    req = ChatRequest(model=model, messages=parse_messages(p.get("messages")))
    req.temperature = _number(p, "temperature", 1.0, 0.0, 2.0)
    req.top_p = _number(p, "top_p", 1.0, 0.0, 1.0)
    req.frequency_penalty = _number(p, "frequency_penalty", 0.0, -2.0, 2.0)
    req.presence_penalty = _number(p, "presence_penalty", 0.0, -2.0, 2.0)
    req.max_tokens_param = "max_completion_tokens" if "max_completion_tokens" in p else "max_tokens"
    req.max_tokens = _integer(p, req.max_tokens_param, 1, None)
    req.n = _integer(p, "n", 1, MAX_N) or 1
    req.seed = _integer(p, "seed", None, None)
    req.stop = _stop(p.get("stop"))
    req.logprobs = _boolean(p, "logprobs")
    top = _integer(p, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top is not None and not req.logprobs:
        raise _Invalid("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
    req.top_logprobs = top or 0
    req.logit_bias = _logit_bias(p.get("logit_bias"))
    req.response_format = _response_format(p.get("response_format"))
    return req


def parse_messages(raw: Any) -> list[dict[str, str]]:
    """Messages as {role, content} strings for the chat template; text parts are joined."""
    if not isinstance(raw, list) or not raw:
        raise _Invalid("'messages' must be a non-empty array of messages.", "messages")
    out = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise _Invalid(
                f"'{where}' must be an object with a role among {sorted(ROLES)}.", f"{where}.role"
            )
        for name in ("tool_calls", "function_call", "audio"):
            if msg.get(name):
                raise _Invalid(
                    f"'{where}.{name}' is not supported here: this model cannot call tools or "
                    "take audio.",
                    f"{where}.{name}",
                    code="unsupported_parameter",
                )
        content = _content(msg.get("content"), msg["role"], where)
        role = "system" if msg["role"] == "developer" else msg["role"]
        out.append({"role": role, "content": content})
    return out


def _content(content: Any, role: str, where: str) -> str:
    if content is None and role == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Invalid(f"'{where}.content' must be a string or an array of parts.",
                       f"{where}.content")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        key = {"text": "text", "refusal": "refusal"}.get(kind or "")
        if key is None or not isinstance(part.get(key), str):
            raise _Invalid(
                f"'{where}.content' parts must be of type 'text' here (got {kind!r}): this "
                "model reads text only.",
                f"{where}.content",
                code="unsupported_value" if kind else None,
            )
        texts.append(part[key])
    return "".join(texts)


def _number(p: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = p.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _Invalid(f"'{name}' must be a number between {lo} and {hi} (got {value!r}).", name)
    return float(value)


def _integer(p: dict[str, Any], name: str, lo: int | None, hi: int | None) -> int | None:
    value = p.get(name)
    if value is None:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        limits = (
            f" between {lo} and {hi}" if lo is not None and hi is not None
            else f" of at least {lo}" if lo is not None else ""
        )  # fmt: skip
        raise _Invalid(f"'{name}' must be an integer{limits} (got {value!r}).", name)
    return value


def _boolean(p: dict[str, Any], name: str) -> bool:
    value = p.get(name, False)
    if not isinstance(value, bool):
        raise _Invalid(f"'{name}' must be a boolean (got {value!r}).", name)
    return value


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or len(stops) > 4
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise _Invalid("'stop' must be a string or a list of up to 4 non-empty strings.", "stop")
    return stops


def _logit_bias(raw: Any) -> dict[int, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _Invalid("'logit_bias' must be an object of token ids to biases.", "logit_bias")
    out = {}
    for key, bias in raw.items():
        token = str(key)
        if not token.isdigit():
            raise _Invalid(f"'logit_bias' keys must be token ids (got {key!r}).", "logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise _Invalid(
                f"'logit_bias' values must be numbers between -100 and 100 (got {bias!r}).",
                "logit_bias",
            )
        out[int(token)] = float(bias)
    return out


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise _Invalid(
            "'response_format.type' must be one of 'text', 'json_object', 'json_schema' "
            f"(got {kind!r}).",
            "response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise _Invalid("Missing required parameter: 'response_format.json_schema'.",
                       "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise _Invalid(
            "'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'.",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if schema is None:
        schema = {}  # OpenAI's default: any JSON value
    if not isinstance(schema, dict | bool):
        raise _Invalid("'response_format.json_schema.schema' must be a JSON Schema object.",
                       "response_format.json_schema.schema")
    return ResponseFormat("json_schema", schema=schema, name=name)
