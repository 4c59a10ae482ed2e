"""Chat batches and real-time chat on a tiny random-weight model built at test time."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
from support.server import start_server
from support.tiny_chat import build_tiny_chat_model

from .helpers import assert_schema, read_lines, wait_for, write_requests


def test_chat_batch_and_realtime(tmp_path: Path) -> None:
    model_dir = build_tiny_chat_model(tmp_path / "tiny-chat")
    with start_server(tmp_path, chat_model=str(model_dir)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
        model = next(m.id for m in client.models.list() if m.id == model_dir.name)
        path = write_requests(tmp_path / "chat.jsonl", 6, url="/v1/chat/completions",
                              model=model)
        file_id = client.files.create(file=path.open("rb"), purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
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
        answer = client.chat.completions.create(
            model=model, max_tokens=3, messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].finish_reason in ("stop", "length")
        raw = httpx.post(f"{srv.base_url}/chat/completions",
                         json={"model": model, "max_tokens": 2,
                               "messages": [{"role": "user", "content": "hi"}]}).json()
        assert_schema(raw, "CreateChatCompletionResponse")
