"""Chat ⇄ Messages translation and Anthropic's custom ids: plain data."""

from __future__ import annotations

import typing

import pytest

from batch_workflows.anthropic_batches.batch_objects import to_openai_batch, to_openai_line
from batch_workflows.anthropic_batches.custom_ids import ALLOWED, sent_ids
from batch_workflows.anthropic_batches.wire import (
    TranslationError,
    chat_to_messages,
    completion_to_message,
    message_to_completion,
    messages_to_chat,
)
from batch_workflows.lifecycle.failures import resubmits_request
from batch_workflows.pricing import PriceTable
from batch_workflows.profiles import rejects_sampling

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def test_a_chat_body_becomes_messages_params_and_back() -> None:
    body = {"model": "claude-haiku-4-5", "max_completion_tokens": 64, "temperature": 0.2,
            "top_p": 1, "stop": "END", "n": 1, "user": "u1",
            "messages": [{"role": "system", "content": "judge"},
                         {"role": "user", "content": [{"type": "text", "text": "is it ok?"}]}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "v", "schema": SCHEMA, "strict": True}}}
    params = chat_to_messages(body)
    assert params == {
        "model": "claude-haiku-4-5", "max_tokens": 64, "temperature": 0.2,
        "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "system": "judge",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "is it ok?"}]}],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}
    chat = messages_to_chat(params)  # the engine's side
    assert chat["messages"][0] == {"role": "system", "content": "judge"}
    assert chat["response_format"]["json_schema"]["schema"] == SCHEMA
    assert chat["stop"] == ["END"] and chat["max_tokens"] == 64


def test_structured_outputs_take_the_shape_the_official_sdk_sends() -> None:
    """`output_config.format` as the installed `anthropic` SDK types it (GA, no beta header):
    the translation's keys are the SDK's, and a non-strict schema is decoded strictly."""
    from anthropic.types import JSONOutputFormatParam, OutputConfigParam
    from anthropic.types.messages.batch_create_params import Request

    # what one request of a batch create takes (MessageCreateParamsNonStreaming)
    sdk_params = typing.get_type_hints(Request)["params"]
    keys = sdk_params.__required_keys__ | sdk_params.__optional_keys__

    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "v", "schema": SCHEMA}}}
    params = chat_to_messages(body)
    assert set(params) <= keys
    assert set(params["output_config"]) <= OutputConfigParam.__optional_keys__
    fmt = params["output_config"]["format"]
    assert set(fmt) == (JSONOutputFormatParam.__required_keys__
                        | JSONOutputFormatParam.__optional_keys__) == {"type", "schema"}
    assert fmt == {"type": "json_schema", "schema": SCHEMA}
    assert "output_format" not in keys  # the beta's parameter is not in the GA API


@pytest.mark.parametrize(("params", "param"), [
    ({"output_config": {"effort": "low"}}, "output_config.effort"),
    ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
    ({"output_format": {"type": "json_schema", "schema": SCHEMA}}, "output_format"),
])
def test_the_engine_refuses_what_it_cannot_honour_by_name(params: dict, param: str) -> None:
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(TranslationError) as caught:
        messages_to_chat({**base, **params})
    assert caught.value.param == param
    assert messages_to_chat({**base, "output_config": {"format": None, "effort": None}})


@pytest.mark.parametrize(("body", "param"), [
    ({"seed": 1}, "seed"),
    ({"logprobs": True}, "logprobs"),
    ({"tools": []}, "tools"),
    ({"n": 2}, "n"),
    ({"temperature": 1.5}, "temperature"),
    ({"temperature": 0.7, "top_p": 0.95}, "top_p"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "v", "schema": SCHEMA, "description": "a label"}}},
     "response_format.json_schema.description"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "v"}}},
     "response_format.json_schema.schema"),
    ({"max_tokens": None, "max_completion_tokens": None}, "max_tokens"),
])
def test_what_has_no_counterpart_is_refused_by_name(body: dict, param: str) -> None:
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    request = {**base, **body}
    if param == "max_tokens":
        request = {k: v for k, v in base.items() if k != "max_tokens"}
    with pytest.raises(TranslationError) as caught:
        chat_to_messages(request)
    assert caught.value.param == param


@pytest.mark.parametrize("model, refuses", [
    ("claude-opus-4-7", True), ("claude-opus-4-8-20261001", True), ("claude-sonnet-5", True),
    ("claude-haiku-5-5", True), ("claude-sonnet-4-6", False), ("claude-haiku-4-5", False),
    ("claude-3-7-sonnet", False), ("echo-teacher", False),
])
def test_sampling_parameters_are_refused_for_models_that_answer_400(model: str,
                                                                    refuses: bool) -> None:
    assert rejects_sampling(model) is refuses
    body = {"model": model, "max_tokens": 8, "temperature": 0.7,
            "messages": [{"role": "user", "content": "x"}]}
    if not refuses:
        assert chat_to_messages(body)["temperature"] == 0.7
        return
    with pytest.raises(TranslationError) as caught:
        chat_to_messages(body)
    assert caught.value.param == "temperature" and model in str(caught.value)
    # the default is what not sending it means: nothing to refuse
    assert "temperature" not in chat_to_messages({**body, "temperature": 1})
    with pytest.raises(TranslationError) as caught:
        chat_to_messages({**body, "temperature": 1, "top_p": 0.9})
    assert caught.value.param == "top_p"


def test_current_claude_models_are_priced() -> None:
    for model in ("claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5"):
        assert PriceTable.default().get(model) is not None, model
    price = PriceTable.default().get("claude-opus-4-7")
    assert (str(price.batch_input), str(price.batch_output)) == ("2.50", "12.50")


def test_a_tool_turn_is_refused_naming_the_message() -> None:
    with pytest.raises(TranslationError, match=r"messages\[1\]\.role"):
        chat_to_messages({"model": "m", "max_tokens": 8, "messages": [
            {"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]})


def test_a_message_becomes_a_completion_with_finish_reason_and_usage() -> None:
    message = {"id": "msg_1", "model": "claude-haiku-4-5", "stop_reason": "max_tokens",
               "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}],
               "usage": {"input_tokens": 10, "output_tokens": 4,
                         "cache_read_input_tokens": 2}}
    done = message_to_completion(message)
    assert done["choices"][0]["message"]["content"] == "hello"
    assert done["choices"][0]["finish_reason"] == "length"
    assert done["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    assert completion_to_message(done, "msg_1")["stop_reason"] == "max_tokens"


def test_custom_ids_outside_the_pattern_are_mapped_reversibly() -> None:
    ids = ["ok_1", "ticket/1#2", "y" * 65, "ticket/1#3"]
    sent, back = sent_ids(ids)
    assert sent[0] == "ok_1" and all(ALLOWED.match(s) for s in sent)
    assert len(set(sent)) == 4 and {back[s] for s in sent[1:]} == set(ids[1:])


def test_batches_and_result_lines_in_openai_shape() -> None:
    batch = {"id": "msgbatch_1", "processing_status": "ended",
             "created_at": "2025-06-01T00:00:00Z", "expires_at": "2025-06-02T00:00:00Z",
             "ended_at": "2025-06-01T01:00:00Z", "cancel_initiated_at": None,
             "request_counts": {"processing": 0, "succeeded": 3, "errored": 1, "canceled": 0,
                                "expired": 2}}
    out = to_openai_batch(batch, {"k": "v"})
    assert out["status"] == "expired" and out["metadata"] == {"k": "v"}
    assert out["request_counts"] == {"total": 6, "completed": 3, "failed": 3}
    assert out["output_file_id"] == "msgbatch_1:output"
    assert out["error_file_id"] == "msgbatch_1:errors"
    half, line = to_openai_line({"custom_id": "a", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}}, "a/1")
    assert half == "errors" and line["custom_id"] == "a/1"
    assert line["response"]["status_code"] == 529
    assert to_openai_line({"custom_id": "a", "result": {"type": "expired"}}, "a")[1][
        "error"]["code"] == "batch_expired"
    assert not resubmits_request("invalid_request_error")
    assert resubmits_request("overloaded_error") and resubmits_request("api_error")
    assert resubmits_request(None) and resubmits_request("unsupported_parameter")


def test_claude_batch_prices_are_half_rounded_up() -> None:
    price = PriceTable.default().get("claude-3-haiku-20240307")
    assert (str(price.batch_input), str(price.batch_output)) == ("0.13", "0.63")
