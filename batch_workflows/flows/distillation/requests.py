"""Prompts → /v1/chat/completions batch requests, and the prompt table that says which request
is which prompt and sample (Curator's ``prompt(row)`` hook: `messages_of`).

Ids come from content: a prompt's id is a digest of its own text, per-row system prompt and
context (``p`` + 16 hex digits), and the request of its k-th sample is ``<prompt id>-s<k>``, so
the same prompt keeps its ids across runs and files. A prompt that occurs again in the same
partition (same id) is asked once; the repeats are counted (`PromptTableWriter.repeats`), not
sent. The prompt table (``distillation/<partition>/prompts.parquet``, the flow's side table) is
one row per request: custom_id, prompt_id, sample, source, line, task, and the system and user
messages as sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from batch_workflows.flows.distillation.prompts import Prompt
from batch_workflows.flows.distillation.settings import DistillationSettings
from batch_workflows.flows.side_table import DEFAULT_ROW_GROUP, SideTableWriter
from batch_workflows.profiles import CHAT

CONTEXT_TEMPLATE = "Context:\n{context}\n\n{prompt}"

PROMPT_SCHEMA = pa.schema([
    ("custom_id", pa.string()),
    ("prompt_id", pa.string()),
    ("sample", pa.int32()),
    ("source", pa.string()),
    ("line", pa.int64()),
    ("task", pa.string()),
    ("system", pa.string()),  # null: no system message was sent
    ("user", pa.string()),
])


def prompt_id(prompt: Prompt) -> str:
    """A digest of what the prompt says (text, per-row system prompt, context)."""
    content = orjson.dumps([prompt.system, prompt.context, prompt.prompt])
    return "p" + hashlib.sha256(content).hexdigest()[:16]


def custom_id_of(pid: str, sample: int) -> str:
    return f"{pid}-s{sample}"


def prompt_id_of(custom_id: str) -> str:
    """The prompt id inside a request's custom_id."""
    return custom_id.rsplit("-s", 1)[0]


def system_message(prompt: Prompt, template: str) -> str | None:
    """The row's own system prompt, else the template (``{task}`` filled in); None when empty."""
    text = prompt.system if prompt.system is not None else template.replace("{task}", prompt.task)
    return text if text.strip() else None


def user_message(prompt: Prompt) -> str:
    if prompt.context and prompt.context.strip():
        return CONTEXT_TEMPLATE.format(context=prompt.context.strip(), prompt=prompt.prompt)
    return prompt.prompt


def messages_of(system: str | None, user: str) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system is not None else []
    return [*head, {"role": "user", "content": user}]


class PromptTableWriter:
    """Streams the prompt table (row groups: memory stays flat) and counts prompts, requests
    and the repeats that were not sent."""

    def __init__(self, path: str | Path, row_group: int = DEFAULT_ROW_GROUP):
        self._table = SideTableWriter(path, PROMPT_SCHEMA, row_group)
        self.path = self._table.path
        self.prompts = 0
        self.requests = 0
        self.repeats = 0  # prompts whose id was already in the partition
        self.tasks: dict[str, int] = {}
        self._seen: set[str] = set()

    def first_time(self, pid: str) -> bool:
        """Whether a prompt with this id is new to the partition (repeats are counted)."""
        if pid in self._seen:
            self.repeats += 1
            return False
        self._seen.add(pid)
        return True

    def add(self, custom_id: str, pid: str, sample: int, prompt: Prompt, system: str | None,
            user: str) -> None:
        self._table.append({"custom_id": custom_id, "prompt_id": pid, "sample": sample,
                            "source": prompt.source, "line": prompt.line, "task": prompt.task,
                            "system": system, "user": user})
        self.requests += 1

    def counted_prompt(self, task: str) -> None:
        self.prompts += 1
        self.tasks[task] = self.tasks.get(task, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "requests": self.requests,
                "repeated_prompts_not_sent": self.repeats, "tasks": dict(sorted(self.tasks.items()))}

    def close(self) -> None:
        self._table.close()


def request_settings(settings: DistillationSettings) -> dict[str, Any]:
    """What the requests were built with, kept beside them for the dataset card (today's
    settings may have changed by the time the dataset is written)."""
    return {"model": settings.model, "system_prompt": settings.system_prompt,
            "sampling": {**settings.sampling, "seed": settings.seed,
                         "samples_per_prompt": settings.samples}}


def build_requests(prompts: Iterable[Prompt], settings: DistillationSettings,
                   table: PromptTableWriter) -> Iterator[dict[str, Any]]:
    """The batch request lines for `prompts` (``settings.samples`` per prompt), each recorded
    in `table` as it is made."""
    for prompt in prompts:
        pid = prompt_id(prompt)
        if not table.first_time(pid):
            continue
        table.counted_prompt(prompt.task)
        system = system_message(prompt, settings.system_prompt)
        user = user_message(prompt)
        messages = messages_of(system, user)
        for k in range(settings.samples):
            cid = custom_id_of(pid, k)
            table.add(cid, pid, k, prompt, system, user)
            body: dict[str, Any] = {"model": settings.model, "messages": messages,
                                    **settings.sampling}
            if settings.seed is not None:
                body["seed"] = settings.seed + k  # each sample its own, reproducible draw
            yield {"custom_id": cid, "method": "POST", "url": CHAT, "body": body}
