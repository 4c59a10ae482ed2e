"""Chat completions ⇄ Anthropic Messages: the one translation both sides use.

The provider adapter turns a flow's OpenAI-format chat body into Messages params before
anything is sent (`chat_to_messages`) and a Message back into a chat completion
(`message_to_completion`); the local engine does the reverse on its Anthropic routes
(`messages_to_chat`, `completion_to_message`). A parameter with no faithful counterpart is
refused with its name (`TranslationError.param`): a silent drop would change what is paid for.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from batch_workflows.profiles import SAMPLING_PARAMETERS, rejects_sampling

# Messages API: https://docs.anthropic.com/en/api/messages (stop_reason, usage, system).
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal",
                "tool_calls": "tool_use"}

# Anthropic's error types and their HTTP statuses (https://docs.anthropic.com/en/api/errors).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
STATUS_ERROR = {status: kind for kind, status in ERROR_STATUS.items()}

# OpenAI chat parameters that carry no meaning to send (their default, or bookkeeping).
_NEUTRAL = {"n": 1, "stream": False, "response_format": {"type": "text"}, "parallel_tool_calls": None}


class TranslationError(ValueError):
    """A request that cannot be said in the other API; `param` names the field."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


def _check_sampling(params: dict[str, Any]) -> None:
    """Refuse, by name, a sampling parameter the model would answer 400 to (every request of
    the batch an invalid_request_error); its default value is the same as not sending it."""
    if not rejects_sampling(params.get("model")):
        return
    if params.get("temperature") == 1:
        del params["temperature"]
    for name in SAMPLING_PARAMETERS:
        if name in params:
            raise TranslationError(name, f"{params['model']} takes no sampling parameters "
                                         "(Claude models from 4.7 on answer 400 to temperature, "
                                         "top_p and top_k); remove it (the distillation flow: "
                                         f"DISTILLATION_{name.upper()}=none)")


# -- the adapter's side: OpenAI chat body → Messages params, Message → chat completion ------------
def chat_to_messages(body: Mapping[str, Any]) -> dict[str, Any]:
    """Messages params for one chat completions body; TranslationError names what cannot go."""
    params: dict[str, Any] = {}
    for name, value in body.items():
        if name in _NEUTRAL and value == _NEUTRAL[name]:
            continue
        if name == "model":
            params["model"] = value
        elif name == "messages":
            system, messages = _split_system(value)
            if system:
                params["system"] = system
            params["messages"] = messages
        elif name in ("max_tokens", "max_completion_tokens"):
            if params.get("max_tokens") not in (None, value):
                raise TranslationError(name, "max_tokens and max_completion_tokens disagree")
            params["max_tokens"] = value
        elif name == "temperature":
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise TranslationError(name, f"Anthropic takes 0 to 1, got {value!r}")
            params["temperature"] = value
        elif name == "top_p":
            if value != 1:  # 1 samples from everything: the same as not sending it
                params["top_p"] = value
        elif name == "stop":
            if value is not None:
                params["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif name == "user":
            params["metadata"] = {"user_id": value}
        elif name == "response_format":
            params["output_config"] = {"format": _output_format(value)}
        else:
            raise TranslationError(name, "has no Anthropic Messages counterpart; remove it for "
                                         "provider 'anthropic'")
    for required in ("model", "messages"):
        if required not in params:
            raise TranslationError(required, "is required")
    _check_sampling(params)
    if "temperature" in params and "top_p" in params:
        # Claude Opus 4.1 and later, Sonnet 4.5 and Haiku 4.5 answer 400 to both (an
        # invalid_request_error for every request of the batch): refused here instead.
        raise TranslationError("top_p", "Anthropic's current models take temperature or top_p, "
                                        "not both; drop one (top_p 1 counts as unset)")
    if "max_tokens" not in params:
        raise TranslationError("max_tokens", "is required by Anthropic's Messages API; set "
                                             "max_tokens (or max_completion_tokens) on every request")
    return params


# Structured outputs on the Messages API (checked against the official SDK this project tests
# with, anthropic 2.17: ``types/output_config_param.py`` and ``json_output_format_param.py``,
# and Anthropic's guide https://platform.claude.com/docs/en/build-with-claude/structured-outputs):
# ``output_config: {"format": {"type": "json_schema", "schema": {...}}}``, generally available,
# no ``anthropic-beta`` header. The beta's top-level ``output_format`` (header
# ``structured-outputs-2025-11-13``) is deprecated: the SDK itself, beta namespace included,
# now sends ``output_config.format`` in its place. The format has no name, description or strict
# flag: decoding is always constrained to the schema.
_JSON_SCHEMA_KEYS = {"name", "schema", "strict"}


def _output_format(value: Any) -> dict[str, Any]:
    """response_format → Messages ``output_config.format`` (structured outputs).

    Only ``json_schema`` has a counterpart. OpenAI's ``json_object`` (any JSON, no schema) is
    refused rather than loosened or tightened; so is a ``description`` (Anthropic's format has
    no place for it, and it steers the answer). ``name`` is a label, and ``strict`` needs no
    counterpart: Anthropic always decodes to the schema (``strict: false`` only gets tighter).
    """
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind != "json_schema":
        raise TranslationError("response_format", f"type {kind!r} has no Anthropic counterpart; "
                                                  "use json_schema with a schema")
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise TranslationError("response_format.json_schema", "is required")
    for key in spec:
        if key not in _JSON_SCHEMA_KEYS:
            raise TranslationError(f"response_format.json_schema.{key}",
                                   "has no counterpart in Anthropic's output_config.format "
                                   "(type and schema only); remove it for provider 'anthropic'")
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        raise TranslationError("response_format.json_schema.schema", "is required")
    return {"type": "json_schema", "schema": dict(schema)}


def _split_system(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages", "must be a non-empty list")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        where = f"messages[{i}]"
        extra = set(message or {}) - {"role", "content", "name"}
        if extra:
            raise TranslationError(f"{where}.{sorted(extra)[0]}", "has no Anthropic counterpart")
        if role in ("system", "developer"):
            if out:  # Anthropic has one system prompt, before the turns
                raise TranslationError(f"{where}.role", f"a {role} message after the first turn "
                                                        "has no Anthropic counterpart")
            system.append(_text_only(message.get("content"), f"{where}.content"))
        elif role in ("user", "assistant"):
            out.append({"role": role, "content": _content(message.get("content"),
                                                          f"{where}.content")})
        else:
            raise TranslationError(f"{where}.role", f"{role!r} is not supported for provider "
                                                    "'anthropic' (user, assistant, system)")
    if not out:
        raise TranslationError("messages", "needs at least one user message")
    return ("\n\n".join(system) or None), out


def _text_only(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == "text"
                                         for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise TranslationError(where, "must be text")


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(where, "must be a string or a list of parts")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{where}[{j}].image_url"))
        else:
            raise TranslationError(f"{where}[{j}].type", f"{kind!r} parts are not supported "
                                                         "for provider 'anthropic'")
    return blocks


def _image_block(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise TranslationError(where, "needs a url")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media = head.removeprefix("data:").removesuffix(";base64")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def message_to_completion(message: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages API Message as an OpenAI chat completion (content, finish_reason, usage)."""
    text = "".join(b.get("text", "") for b in message.get("content") or ()
                   if isinstance(b, Mapping) and b.get("type") == "text")
    usage = message.get("usage") or {}
    # Cached prompt tokens are prompt tokens too (billed at their own rate, counted here).
    prompt = sum(int(usage.get(k) or 0) for k in (
        "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    completion = int(usage.get("output_tokens") or 0)
    stop = message.get("stop_reason")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": FINISH_REASONS.get(str(stop), "stop"),
        }],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
        "stop_reason": stop,  # kept: `refusal` and `pause_turn` say more than finish_reason
    }


# -- the engine's side: Messages params → chat body, chat completion → Message --------------------
_PARAMS_TO_CHAT = {"model": "model", "max_tokens": "max_tokens", "temperature": "temperature",
                   "top_p": "top_p", "top_k": "top_k"}


def messages_to_chat(params: Mapping[str, Any]) -> dict[str, Any]:
    """A chat completions body for Messages params (the engine runs it on its chat backend)."""
    if not isinstance(params, Mapping):
        raise TranslationError("params", "must be an object")
    for required in ("model", "max_tokens", "messages"):
        if required not in params:
            raise TranslationError(required, "Field required")
    body: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    for name, value in params.items():
        if name in _PARAMS_TO_CHAT:
            body[_PARAMS_TO_CHAT[name]] = value
        elif name == "system":
            messages.insert(0, {"role": "system", "content": _blocks_text(value, "system")})
        elif name == "messages":
            messages.extend(_chat_message(m, i) for i, m in enumerate(value or ()))
        elif name == "stop_sequences":
            body["stop"] = list(value)
        elif name == "metadata":
            continue  # user_id: bookkeeping, no effect on the answer
        elif name == "output_config":
            fmt = _output_config_format(value)
            if fmt is not None:
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "output", "schema": fmt["schema"], "strict": True}}
        elif name == "output_format":
            raise TranslationError(name, "the structured-outputs beta parameter is replaced by "
                                         "output_config.format (as the current SDK sends it)")
        elif name == "stream" and not value:
            continue
        else:
            raise TranslationError(name, "is not supported by this server")
    body["messages"] = messages
    return body


def _output_config_format(value: Any) -> Mapping[str, Any] | None:
    """``output_config.format`` as the SDK sends it (see ``_output_format``); other settings
    of ``output_config`` (``effort``) have no meaning on this server's backends: refused."""
    if not isinstance(value, Mapping):
        raise TranslationError("output_config", "must be an object")
    for key, setting in value.items():
        if key != "format" and setting is not None:
            raise TranslationError(f"output_config.{key}", "is not supported by this server")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema" \
            or not isinstance(fmt.get("schema"), Mapping):
        raise TranslationError("output_config.format",
                               "must be {'type': 'json_schema', 'schema': {...}}")
    return fmt


def _chat_message(message: Any, i: int) -> dict[str, Any]:
    role = message.get("role") if isinstance(message, Mapping) else None
    if role not in ("user", "assistant"):
        raise TranslationError(f"messages.{i}.role", "Input should be 'user' or 'assistant'")
    return {"role": role, "content": _blocks_text(message.get("content"), f"messages.{i}.content")}


def _blocks_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, block in enumerate(content):
            if not isinstance(block, Mapping) or block.get("type") != "text":
                raise TranslationError(f"{where}.{j}.type", "this server takes text blocks only")
            texts.append(str(block.get("text", "")))
        return "".join(texts)
    raise TranslationError(where, "must be a string or a list of content blocks")


def completion_to_message(completion: Mapping[str, Any], message_id: str) -> dict[str, Any]:
    """An OpenAI chat completion as a Messages API Message."""
    choice = (completion.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    usage = completion.get("usage") or {}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                  "output_tokens": int(usage.get("completion_tokens") or 0)},
    }


def error_object(kind: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error envelope."""
    obj: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        obj["request_id"] = request_id
    return obj
