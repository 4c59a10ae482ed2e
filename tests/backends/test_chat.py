"""ChatBackend on a tiny random-weight model built at test time (it writes noise, for real)."""

from __future__ import annotations

import json
import re

import pytest

from batch_workflows.backends.base import Backend

USER = [{"role": "user", "content": "hello world, how are you today?"}]


def _chat(**params) -> dict:
    return {"model": "tiny", "messages": USER, **params}


def _choice(result) -> dict:
    assert result.status_code == 200, result.body
    return result.body["choices"][0]


def test_response_is_openai_shaped(chat):
    assert isinstance(chat, Backend)
    assert chat.endpoint == "/v1/chat/completions" and chat.model_ids == ["tiny"]
    (res,) = chat.run([_chat(max_tokens=4, temperature=0)])
    body = res.body
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "tiny"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant" and isinstance(
        choice["message"]["content"], str
    )
    assert choice["message"]["refusal"] is None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_prompt_tokens_come_from_the_chat_template(chat):
    _, tok = chat.load()
    text = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>hello world, how are you today?<|end|><|assistant|>"
    (res,) = chat.run([_chat(max_tokens=1, temperature=0)])
    assert res.body["usage"]["prompt_tokens"] == len(
        tok(text, add_special_tokens=False)["input_ids"]
    )


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_is_respected_and_reported_as_length(chat, param):
    (res,) = chat.run([_chat(temperature=0, **{param: 5})])
    choice = _choice(res)
    assert choice["finish_reason"] == "length"
    assert res.body["usage"]["completion_tokens"] == 5


def test_seed_makes_sampling_deterministic_whatever_the_batch(chat):
    body = _chat(max_tokens=12, seed=1234, temperature=1.0, top_p=0.95)
    (alone,) = chat.run([body])
    crowd = chat.run(
        [
            {
                "model": "tiny",
                "messages": [{"role": "user", "content": "a much longer prompt " * 5}],
                "max_tokens": 3,
            },
            body,
            _chat(max_tokens=12, seed=99),
        ]
    )
    assert _choice(crowd[1])["message"] == _choice(alone)["message"]
    assert crowd[1].body["usage"] == alone.body["usage"]
    others = {
        _choice(chat.run([_chat(max_tokens=12, seed=s)])[0])["message"]["content"] for s in range(5)
    }
    assert len(others) > 1  # different seeds really sample


def test_batched_greedy_equals_transformers_generate(chat):
    model, tok = chat.load()
    prompts = [
        USER,
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "batch files?"}],
    ]
    results = chat.run(
        [{"model": "tiny", "messages": m, "max_tokens": 6, "temperature": 0} for m in prompts]
    )
    for messages, res in zip(prompts, results, strict=True):
        assert _choice(res)["message"]["content"] == _generate_alone(model, tok, messages, 6)


def _sample_with_letters(chat):
    """A seeded completion whose text has two ASCII letters after its start."""
    for seed in range(50):
        (res,) = chat.run([_chat(max_tokens=20, seed=seed)])
        text = _choice(res)["message"]["content"]
        match = re.search(r"[A-Za-z]{2}", text[1:])
        if match:
            return seed, text, text[1 + match.start() : 1 + match.end()]
    pytest.fail("no seed gave a usable completion")


def test_stop_truncates_the_text_and_sets_finish_reason(chat):
    seed, full, stop = _sample_with_letters(chat)
    (res,) = chat.run([_chat(max_tokens=20, seed=seed, stop=["never-appears", stop])])
    choice = _choice(res)
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == full[: full.find(stop)]
    assert stop not in choice["message"]["content"]
    assert res.body["usage"]["completion_tokens"] <= 20


@pytest.mark.parametrize(
    ("changes", "status", "param"),
    [
        ({"n": 200}, 400, "n"),
        ({"stream": True}, 400, "stream"),
        ({"temperature": 3}, 400, "temperature"),
        ({"top_p": 1.5}, 400, "top_p"),
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"seed": "x"}, 400, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "messages[0].content",
        ),
        ({"tools": []}, 400, "tools"),
        ({"max_tokens": 100_000}, 400, "messages"),
        ({"model": "gpt-4o-mini"}, 404, "model"),
    ],
)
def test_bad_requests_become_error_results(chat, changes, status, param):
    good = _chat(max_tokens=2, temperature=0)
    first, bad, last = chat.run([good, {**_chat(max_tokens=2), **changes}, good])
    assert first.status_code == last.status_code == 200
    assert bad.status_code == status
    err = bad.body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param
    assert err["message"]


def test_context_overflow_has_openai_code(chat):
    (res,) = chat.run([_chat(max_tokens=100_000)])
    assert res.body["error"]["code"] == "context_length_exceeded"


def test_text_content_parts_are_accepted(chat):
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello world, "},
                {"type": "text", "text": "how are you today?"},
            ],
        }
    ]
    a, b = chat.run(
        [
            _chat(max_tokens=3, temperature=0),
            {"model": "tiny", "messages": parts, "max_tokens": 3, "temperature": 0},
        ]
    )
    assert a.body["usage"] == b.body["usage"]
    assert _choice(a)["message"] == _choice(b)["message"]


def test_model_without_chat_template_uses_the_fallback(tmp_path):
    from support.tiny_chat import build_tiny_chat_model

    from batch_workflows.backends.chat import ChatBackend

    path = build_tiny_chat_model(tmp_path / "plain", with_chat_template=False)
    backend = ChatBackend(path, device="cpu")
    assert backend.model_ids == ["plain"]
    (res,) = backend.run([{"model": "plain", "messages": USER, "max_tokens": 3, "temperature": 0}])
    _, tok = backend.load()
    assert not tok.chat_template
    expected = tok("user: hello world, how are you today?\nassistant:")["input_ids"]
    assert res.body["usage"]["prompt_tokens"] == len(expected)
    assert _choice(res)["finish_reason"] in ("length", "stop")
    backend.close()


def test_without_max_tokens_the_default_is_clamped_to_the_window(tiny_chat_path):
    from batch_workflows.backends.chat import ChatBackend

    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", default_max_tokens=20)
    model, tok = backend.load()
    window = model.config.max_position_embeddings

    def prompt_len(messages):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    words = 1
    while prompt_len([{"role": "user", "content": "hello " * (words + 1)}]) < window - 10:
        words += 1
    long_user = [{"role": "user", "content": "hello " * words}]
    prompt = prompt_len(long_user)
    assert window - 20 < prompt < window - 1
    short, long = backend.run(
        [_chat(temperature=0), {"model": "tiny", "messages": long_user, "temperature": 0}]
    )
    assert short.body["usage"]["completion_tokens"] == 20
    assert _choice(short)["finish_reason"] == "length"
    assert long.body["usage"]["completion_tokens"] == window - prompt
    assert long.body["usage"]["total_tokens"] == window
    backend.close()


def test_should_stop_is_asked_between_step_groups(tiny_chat_path):
    from batch_workflows.backends.chat import ChatBackend

    # Two rows in the model, two steps per group: the first group finishes 3-token rows
    # (the prefill gives each its first token).
    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", max_rows=2,
                          step_group=2)
    bodies = [_chat(max_tokens=3, temperature=0) for _ in range(6)]
    asked = iter([False, True])
    results = backend.run(bodies, should_stop=lambda: next(asked))
    assert sum(r is not None for r in results) == 2
    assert all(_choice(r)["finish_reason"] == "length" for r in results if r is not None)
    backend.close()


def test_each_request_is_reported_as_it_finishes(tiny_chat_path):
    from batch_workflows.backends.chat import ChatBackend

    # One row in the model at a time, one step per turn: the rows finish in different turns,
    # and each is reported (with the result run() returns for it) in the turn it finished,
    # not when the run ends. should_stop() is asked once before every turn: it counts them.
    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", max_rows=1,
                          step_group=1)
    bodies = [_chat(max_tokens=6, temperature=0), {"model": "tiny"},
              _chat(max_tokens=2, temperature=0), _chat(max_tokens=4, temperature=0)]
    turns = 0

    def should_stop() -> bool:
        nonlocal turns
        turns += 1
        return False

    reports: list[tuple[int, object, int]] = []
    results = backend.run(bodies, should_stop,
                          on_result=lambda i, r: reports.append((i, r, turns)))
    assert sorted(i for i, _, _ in reports) == [0, 1, 2, 3]
    assert all(results[i] is r for i, r, _ in reports)
    assert results[1].status_code == 400 and reports[0][:2] == (1, results[1])  # first turn
    reported_at = {i: turn for i, _, turn in reports}
    assert reported_at[1] == 1
    assert len({reported_at[0], reported_at[2], reported_at[3]}) == 3
    assert max(reported_at.values()) == turns
    backend.close()


def _generate_alone(model, tok, messages, max_new_tokens):
    import torch

    ids = tok(
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
        return_tensors="pt",
    )["input_ids"]
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
    )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_rows_joining_and_leaving_the_batch_give_what_each_gives_alone(tiny_chat_path):
    """Continuous batching: with two rows in the model, rows finish at different steps and
    waiting rows of other lengths are merged in; greedy text equals generate() on each alone."""
    from batch_workflows.backends.chat import ChatBackend

    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", max_rows=2,
                          step_group=3)
    model, tok = backend.load()
    cases = [
        ([{"role": "user", "content": "hello " * k}], n)
        for k, n in [(1, 9), (7, 2), (3, 5), (12, 4), (2, 11), (5, 1)]
    ]
    results = backend.run([
        {"model": "tiny", "messages": m, "max_tokens": n, "temperature": 0} for m, n in cases
    ])  # fmt: skip
    for (messages, n), res in zip(cases, results, strict=True):
        assert _choice(res)["message"]["content"] == _generate_alone(model, tok, messages, n)
        assert res.body["usage"]["completion_tokens"] <= n
    backend.close()


def test_n_choices_are_sampled_apart_and_counted_together(chat):
    (res,) = chat.run([_chat(max_tokens=6, n=3, seed=5)])
    choices = res.body["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert len({c["message"]["content"] for c in choices}) > 1
    assert res.body["usage"]["completion_tokens"] == 18  # 3 x 6 (the tiny model never ends)
    (again,) = chat.run([_chat(max_tokens=6, n=3, seed=5)])
    assert [c["message"] for c in again.body["choices"]] == [c["message"] for c in choices]


def test_logit_bias_steers_every_token(chat):
    _, tok = chat.load()
    token = tok("batch", add_special_tokens=False)["input_ids"][0]
    (res,) = chat.run([_chat(max_tokens=4, temperature=0, logit_bias={str(token): 100})])
    assert _choice(res)["message"]["content"] == tok.decode([token]) * 4
    (bad,) = chat.run([_chat(max_tokens=4, logit_bias={"999999": 1})])
    assert bad.status_code == 400 and bad.body["error"]["param"] == "logit_bias"


def test_logprobs_come_per_token_with_alternatives(chat):
    (res,) = chat.run([_chat(max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)])
    content = _choice(res)["logprobs"]["content"]
    assert len(content) == res.body["usage"]["completion_tokens"] == 5
    for entry in content:
        assert entry["logprob"] <= 0 and isinstance(entry["bytes"], list)
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["logprob"] == entry["logprob"]  # greedy: the top one


def test_json_schema_output_parses_even_from_noise(chat):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    results = chat.run([_chat(max_tokens=40, seed=s, response_format=fmt) for s in range(4)])
    for res in results:
        choice = _choice(res)
        if choice["finish_reason"] == "stop":
            value = json.loads(choice["message"]["content"])
            assert set(value) == {"n"} and isinstance(value["n"], int)
    (bad,) = chat.run([_chat(response_format={
        "type": "json_schema",
        "json_schema": {"name": "bad", "schema": {"$ref": "#/$defs/missing"}},
    })])  # fmt: skip
    err = bad.body["error"]
    assert bad.status_code == 400 and err["param"] == "response_format"
    assert "missing" in err["message"]


def test_a_realtime_request_does_not_wait_for_a_running_batch(tiny_chat_path):
    import threading
    import time

    from batch_workflows.backends.chat import ChatBackend

    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", max_rows=4,
                          step_group=4)
    backend.load()
    long_batch = [_chat(max_tokens=400, temperature=0) for _ in range(16)]
    worker = threading.Thread(target=backend.run, args=(long_batch,))
    worker.start()
    time.sleep(0.5)  # the batch is decoding
    started = time.monotonic()
    (res,) = backend.run([_chat(max_tokens=3, temperature=0)])
    waited = time.monotonic() - started
    assert _choice(res)["finish_reason"] == "length"
    assert worker.is_alive(), "the batch ended first: make it longer"
    worker.join()
    assert waited < 5, waited
    backend.close()


def test_rows_sharing_a_long_system_prompt_prefill_it_once_and_answer_as_alone(tiny_chat_path):
    """A run's common system prompt is prefilled once; greedy text still equals generate()
    on each prompt alone, with rows joining and leaving (two rows in the model at a time)."""
    from batch_workflows.backends.chat import ChatBackend

    backend = ChatBackend(tiny_chat_path, model_id="tiny", device="cpu", max_rows=2,
                          step_group=3)
    model, tok = backend.load()
    policy = {"role": "system", "content": "every request gets exactly one line " * 20}
    cases = [([policy, {"role": "user", "content": "hello " * k}], n)
             for k, n in [(1, 9), (7, 2), (3, 5), (12, 4), (2, 11)]]
    cases.append((USER, 6))  # shares nothing with the others: prefilled whole
    prefilled = []

    def count_prefill(_module, _args, kwargs):
        if kwargs["input_ids"].shape[1] > 1:  # decoding steps feed one token per row
            prefilled.append(kwargs["input_ids"].numel())

    hook = model.register_forward_pre_hook(count_prefill, with_kwargs=True)
    try:
        results = backend.run([
            {"model": "tiny", "messages": m, "max_tokens": n, "temperature": 0} for m, n in cases
        ])  # fmt: skip
    finally:
        hook.remove()
    for (messages, n), res in zip(cases, results, strict=True):
        assert _choice(res)["message"]["content"] == _generate_alone(model, tok, messages, n)
    prompts = [res.body["usage"]["prompt_tokens"] for res in results]
    assert min(prompts[:5]) > 128 and prompts[5] < 20
    # The system prompt once, then each row's own few tokens: not the five whole prompts.
    assert sum(prefilled) < max(prompts) + sum(prompts) / 3
    backend.close()


def test_shared_prefixes_group_rows_by_their_common_start():
    from batch_workflows.backends.generation import Row
    from batch_workflows.backends.prefixes import SharedPrefixes

    a, b = list(range(200)), [7] * 150
    rows = [Row(a + [1, 2], 4), Row(a + [3], 4), Row(a[:150] + [9] * 60, 4),  # share a[:150]
            Row(b + [1], 4), Row(b + [1], 4),  # n=2 choices of one prompt
            Row(list(range(500, 700)), 4),  # alone
            Row(a[:100], 4), Row(a[:100], 4)]  # under the minimum
    shared = SharedPrefixes(rows, min_tokens=128)
    assert [shared.length(r) for r in rows] == [150, 150, 150, 150, 150, 0, 0, 0]
    first, second = shared.group(rows[0]), shared.group(rows[3])
    assert first == shared.group(rows[2]) != second == shared.group(rows[4])
    assert shared.prefix(first) == a[:150] and shared.prefix(second) == b
    off = SharedPrefixes(rows, min_tokens=None)
    assert [off.length(r) for r in rows] == [0] * 8
    shared.disable()  # a model whose cache cannot be copied: every row prefilled whole
    assert [shared.group(r) for r in rows] == [None] * 8
