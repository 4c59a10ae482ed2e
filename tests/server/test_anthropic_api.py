"""The engine's Anthropic Message Batches API, driven by the official `anthropic` SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
from support.server import ServerHandle, start_server
from support.tiny_chat import build_tiny_chat_model


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    tmp = tmp_path_factory.mktemp("anthropic-engine")
    model_dir = build_tiny_chat_model(tmp / "tiny-chat")
    with start_server(tmp, chat_model=str(model_dir), api_key="sk-ant-test") as srv:
        yield srv, model_dir.name


@pytest.fixture(scope="module")
def claude(engine: tuple[ServerHandle, str]) -> anthropic.Anthropic:
    srv, _ = engine
    return anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)


def _params(model: str, text: str, **extra: object) -> dict:
    return {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": text}],
            **extra}


def _wait(claude: anthropic.Anthropic, batch_id: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while True:
        batch = claude.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)


def test_a_batch_runs_and_its_results_come_back_through_the_sdk(
        claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    _, model = engine
    batch = claude.messages.batches.create(requests=[
        {"custom_id": "plain", "params": _params(model, "hello")},
        {"custom_id": "with-system", "params": _params(
            model, "hi", system="be brief", stop_sequences=["zzz"], temperature=0.5)},
        {"custom_id": "blocks", "params": {"model": model, "max_tokens": 3, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "the batch"}]}]}},
    ])
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 3
    done = _wait(claude, batch.id)
    assert done.request_counts.succeeded == 3 and done.ended_at is not None
    assert done.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert set(results) == {"plain", "with-system", "blocks"}
    for result in results.values():
        assert result.type == "succeeded"
        message = result.message
        assert message.role == "assistant" and message.content[0].type == "text"
        assert message.stop_reason in ("end_turn", "max_tokens", "stop_sequence")
        assert 0 < message.usage.output_tokens <= 4 and message.usage.input_tokens > 0


def test_realtime_messages(claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    _, model = engine
    message = claude.messages.create(**_params(model, "hello", system="be brief"))
    assert message.type == "message" and message.content[0].type == "text"
    assert message.usage.output_tokens > 0
    with pytest.raises(anthropic.NotFoundError, match="no-such-model"):
        claude.messages.create(**_params("no-such-model", "hello"))


def test_bad_requests_are_refused_naming_the_field(
        claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    _, model = engine
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.1\.custom_id"):
        claude.messages.batches.create(requests=[
            {"custom_id": "ok", "params": _params(model, "a")},
            {"custom_id": "has a space", "params": _params(model, "b")}])
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.0\.params\.max_tokens"):
        claude.messages.batches.create(requests=[
            {"custom_id": "x", "params": {"model": model, "messages": []}}])
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        claude.messages.batches.create(requests=[
            {"custom_id": "x", "params": _params(model, "a")},
            {"custom_id": "x", "params": _params(model, "b")}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve("msgbatch_000000000000000000000000")


def test_an_unknown_model_errors_every_request(
        claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    batch = claude.messages.batches.create(requests=[
        {"custom_id": f"r{i}", "params": _params("claude-unknown", "a")} for i in range(2)])
    done = _wait(claude, batch.id)
    assert done.request_counts.errored == 2
    results = list(claude.messages.batches.results(batch.id))
    assert {r.custom_id for r in results} == {"r0", "r1"}
    for r in results:
        assert r.result.type == "errored"
        assert "claude-unknown" in r.result.error.error.message


def test_cancel_answers_every_request_once(
        claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    _, model = engine
    # A busy engine: the blocker holds the worker, so the cancelled batch has requests unrun.
    blocker = claude.messages.batches.create(requests=[
        {"custom_id": f"b{i}", "params": _params(model, "count to ten", max_tokens=32)}
        for i in range(400)])
    ids = [f"c{i}" for i in range(6)]
    batch = claude.messages.batches.create(requests=[
        {"custom_id": cid, "params": _params(model, "hi")} for cid in ids])
    canceled = claude.messages.batches.cancel(batch.id)
    claude.messages.batches.cancel(blocker.id)
    assert canceled.processing_status in ("canceling", "ended")
    assert canceled.cancel_initiated_at is not None
    for batch_id in (batch.id, blocker.id):
        done = _wait(claude, batch_id)
        results = list(claude.messages.batches.results(batch_id))
        kinds = [r.result.type for r in results]
        counts = done.request_counts
        assert len({r.custom_id for r in results}) == len(results) == sum(
            (counts.succeeded, counts.canceled, counts.errored, counts.expired))
        assert kinds.count("canceled") == counts.canceled
        assert kinds.count("succeeded") == counts.succeeded
    assert sorted(r.custom_id for r in claude.messages.batches.results(batch.id)) == sorted(ids)
    assert done.request_counts.canceled > 0  # the blocker was stopped part way


def test_list_pages_with_after_and_before(
        claude: anthropic.Anthropic, engine: tuple[ServerHandle, str]) -> None:
    _, model = engine
    made = [claude.messages.batches.create(
        requests=[{"custom_id": "a", "params": _params(model, "a")}]).id for _ in range(3)]
    newest_first = [b.id for b in claude.messages.batches.list(limit=100)]
    assert newest_first[:3] == made[::-1]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == made[:0:-1] and page.has_more
    older = claude.messages.batches.list(limit=2, after_id=page.last_id)
    assert older.data[0].id == made[0]
    newer = claude.messages.batches.list(limit=1, before_id=made[0])
    assert [b.id for b in newer.data] == [made[1]] and newer.has_more
    assert [b.id for b in claude.messages.batches.list(limit=100)] == newest_first  # every page


def test_the_key_is_required_and_the_openai_side_is_untouched(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, _ = engine
    r = httpx.get(f"{srv.base_url}/messages/batches", headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    assert httpx.get(f"{srv.base_url}/batches",
                     headers={"Authorization": f"Bearer {srv.api_key}"}).status_code == 200


def test_kill_9_mid_message_batch_resumes_with_every_request_once(tmp_path: Path) -> None:
    model_dir = build_tiny_chat_model(tmp_path / "tiny-chat")
    with start_server(tmp_path, chat_model=str(model_dir), chunk_size=10, workers=1) as srv:
        sdk = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)
        ids = [f"k{i}" for i in range(200)]
        batch = sdk.messages.batches.create(requests=[
            {"custom_id": cid, "params": _params(model_dir.name, "count", max_tokens=8)}
            for cid in ids])
        deadline = time.monotonic() + 120
        while sdk.messages.batches.retrieve(batch.id).request_counts.succeeded < 40:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        srv.kill()  # mid-batch: some chunks committed, the rest not yet run
        srv.restart()
        mid = sdk.messages.batches.retrieve(batch.id)
        assert mid.processing_status in ("in_progress", "ended")
        done = _wait(sdk, batch.id)
        assert done.request_counts.succeeded == len(ids)
        results = [r.custom_id for r in sdk.messages.batches.results(batch.id)]
        assert sorted(results) == sorted(ids)  # each exactly once across the crash


def test_structured_outputs_as_the_sdk_sends_them(engine: tuple[ServerHandle, str]) -> None:
    """`output_config.format` (GA: no anthropic-beta header) reaches the engine's constrained
    decoding, real-time and in a batch; what it cannot honour is refused by name."""
    srv, model = engine
    sent: list = []  # the requests as the SDK put them on the wire (its own httpx client)
    http = anthropic.DefaultHttpxClient(event_hooks={"request": [sent.append]})
    claude = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0,
                                 http_client=http)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    fmt = {"format": {"type": "json_schema", "schema": schema}}
    message = claude.messages.create(**_params(model, "answer", max_tokens=24), output_config=fmt)
    body = json.loads(sent[-1].content)
    assert body["output_config"] == fmt and "output_format" not in body
    assert "anthropic-beta" not in sent[-1].headers
    assert message.stop_reason in ("end_turn", "max_tokens")
    if message.stop_reason == "end_turn":  # not cut: the text is the schema's JSON
        assert isinstance(json.loads(message.content[0].text)["ok"], bool)
    batch = claude.messages.batches.create(requests=[
        {"custom_id": "s", "params": {**_params(model, "answer", max_tokens=24),
                                      "output_config": fmt}}])
    (result,) = claude.messages.batches.results(_wait(claude, batch.id).id)
    assert result.result.type == "succeeded"
    with pytest.raises(anthropic.BadRequestError, match=r"output_config\.effort"):
        claude.messages.create(**_params(model, "a"), output_config={"effort": "low"})
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.0\.params\.output_format"):
        claude.messages.batches.create(requests=[{"custom_id": "o", "params": {
            **_params(model, "a"), "output_format": fmt["format"]}}])
