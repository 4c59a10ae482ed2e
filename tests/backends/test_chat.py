"""ChatBackend on a tiny random-weight model built at test time (it writes noise, for real)."""

from __future__ import annotations

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
    import torch

    model, tok = chat.load()
    prompts = [
        USER,
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "batch files?"}],
    ]
    results = chat.run(
        [{"model": "tiny", "messages": m, "max_tokens": 6, "temperature": 0} for m in prompts]
    )
    for messages, res in zip(prompts, results, strict=True):
        ids = tok(
            tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
            return_tensors="pt",
        )["input_ids"]
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
        )
        expected = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert _choice(res)["message"]["content"] == expected


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
        ({"n": 2}, 400, "n"),
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


def test_should_stop_is_asked_between_generation_groups(chat):
    bodies = [_chat(max_tokens=2, temperature=0) for _ in range(chat.max_batch + 3)]
    asked = iter([False, True])
    results = chat.run(bodies, should_stop=lambda: next(asked))
    assert sum(r is not None for r in results) == chat.max_batch
    assert all(_choice(r) for r in results if r is not None)
