"""parse_chat_request against OpenAI's published CreateChatCompletionRequest (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from batch_workflows.backends.base import BackendResult
from batch_workflows.backends.chat_request import (
    PARAMETERS,
    ChatRequest,
    ResponseFormat,
    parse_chat_request,
)

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "openai-chat-request-schema.json").read_text()
)
MESSAGES = [{"role": "user", "content": "hi"}]
SERVED = ["m"]


def _schema_properties(name: str = "CreateChatCompletionRequest") -> set[str]:
    node = SCHEMA["$defs"][name]
    found = set(node.get("properties", {}))
    for part in node.get("allOf", []):
        if "$ref" in part:
            found |= _schema_properties(part["$ref"].rsplit("/", 1)[-1])
        found |= set(part.get("properties", {}))
    return found


def _parse(**params) -> ChatRequest | BackendResult:
    return parse_chat_request({"model": "m", "messages": MESSAGES, **params}, SERVED)


def _error(result) -> dict:
    assert isinstance(result, BackendResult), result
    assert result.status_code == 400
    return result.body["error"]


def test_every_parameter_of_the_published_schema_is_known():
    assert PARAMETERS == _schema_properties()


def test_null_means_absent_for_every_parameter():
    nulls = {name: None for name in PARAMETERS - {"model", "messages"}}
    assert _parse(**nulls) == ChatRequest(model="m", messages=MESSAGES)


def test_what_distilabel_sends_is_accepted():
    # The body distilabel 1.5.3's OpenAILLM.offline_batch_generate writes with its defaults
    # (captured from its _create_jsonl_row): it sends null for what it does not set.
    body = {
        "messages": MESSAGES, "model": "m", "logprobs": False, "top_logprobs": None,
        "max_tokens": 128, "n": 1, "frequency_penalty": 0.0, "presence_penalty": 0.0,
        "temperature": 1.0, "top_p": 1.0, "stop": None, "response_format": None,
    }  # fmt: skip
    jsonschema.Draft202012Validator(SCHEMA).validate(
        {k: v for k, v in body.items() if v is not None}
    )
    request = parse_chat_request(body, SERVED)
    assert isinstance(request, ChatRequest) and request.max_tokens == 128


def test_honoured_parameters_are_parsed():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = _parse(
        max_completion_tokens=9, temperature=0.5, top_p=0.9, seed=7, stop="\n\n", n=3,
        logprobs=True, top_logprobs=2, logit_bias={"42": -100}, frequency_penalty=0.5,
        presence_penalty=-0.5,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "a_1", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert request == ChatRequest(
        model="m", messages=MESSAGES, max_tokens=9, max_tokens_param="max_completion_tokens",
        temperature=0.5, top_p=0.9, seed=7, stop=["\n\n"], n=3, logprobs=True, top_logprobs=2,
        logit_bias={42: -100.0}, frequency_penalty=0.5, presence_penalty=-0.5,
        response_format=ResponseFormat("json_schema", schema=schema, name="a_1"),
    )  # fmt: skip
    assert _parse(response_format={"type": "json_object"}).response_format == ResponseFormat(
        "json_object"
    )
    assert _parse(response_format={"type": "text"}).response_format is None


def test_parameters_without_effect_are_accepted():
    request = _parse(
        metadata={"k": "v"}, user="u", safety_identifier="s", prompt_cache_key="p",
        prompt_cache_retention="24h", store=True, service_tier="flex", stream=False,
        stream_options={"include_usage": True}, parallel_tool_calls=False, tool_choice="none",
        prediction={"type": "content", "content": "x"}, modalities=["text"],
        reasoning_effort="none", verbosity="medium",
    )  # fmt: skip
    assert isinstance(request, ChatRequest)


def test_developer_and_content_parts_become_plain_messages():
    request = _parse(messages=[
        {"role": "developer", "content": [{"type": "text", "text": "be "},
                                          {"type": "text", "text": "brief"}]},
        {"role": "user", "content": "hi", "name": "ann"},
        {"role": "assistant", "content": None},
    ])  # fmt: skip
    assert request.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
    ]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tools": []}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
        ({"stream": True}, "stream"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content"),
        ({"messages": [{"role": "assistant", "content": None,
                        "tool_calls": [{"id": "c", "type": "function"}]}]},
         "messages[0].tool_calls"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_parameter(params, param):
    err = _error(_parse(**params))
    assert err["param"] == param and err["message"]
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"seed": "x"}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"1": 101}}, "logit_bias"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
         "response_format.json_schema.name"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"temprature": 1}, "temprature"),
    ],
)
def test_invalid_values_are_a_400_naming_the_parameter(params, param):
    assert _error(_parse(**params))["param"] == param


def test_unknown_parameters_are_named_like_openai_does():
    err = _error(_parse(foo=1, bar=None))
    assert err["message"] == "Unrecognized request argument supplied: bar, foo"


def test_model_is_required_and_must_be_served():
    assert _error(parse_chat_request({"messages": MESSAGES}, SERVED))["param"] == "model"
    missing = parse_chat_request({"model": "gpt-4o", "messages": MESSAGES}, SERVED)
    assert missing.status_code == 404 and missing.body["error"]["code"] == "model_not_found"
