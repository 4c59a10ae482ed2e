"""The flow's input: prompts, from the shipped sample or from the user's files.

A `Prompt` is one instruction to the teacher: its text, an optional per-row system prompt and an
optional context (a passage the answer must be grounded in), where it came from, and a task
label. Sources, by partition key:

* ``sample-prompts`` — the 210 instruction prompts shipped in
  ``batch_workflows/data/distillation/prompts.jsonl`` (explain, summarise, classify, extract,
  write code, rewrite; 35 each), written for this project;
* ``sample-pydoc`` — document-grounded tasks from the shipped corpus (`flows.corpus`, the
  standard library's pydoc_data topics): a passage of each topic as context, and the task of
  asking and answering the question a learner would have about it;
* anything else — a JSONL, CSV or Parquet file under the watched folder or S3 prefix, with a
  prompt column and optional system and context columns (names are settings). Bad rows (no
  prompt, a non-string, an empty one) stop the partition with file, line and column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_workflows.errors import ProblemLog
from batch_workflows.flows.corpus import PYDOC_SOURCE, pydoc_documents
from batch_workflows.flows.sources import ROW_SUFFIXES, join_uri, read_rows

SAMPLE_PROMPTS = "sample-prompts"
SAMPLE_PYDOC = "sample-pydoc"
SAMPLE_KEYS = (SAMPLE_PROMPTS, SAMPLE_PYDOC)
PROMPT_SUFFIXES = ROW_SUFFIXES  # what the inbox picks up
PROMPTS_FILE = "prompts.jsonl"
# Package data (pyproject's package-data), next to prices.csv.
SHIPPED_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "distillation" / PROMPTS_FILE
GROUNDED_TASK = "grounded_qa"
USER_TASK = "user"
GROUNDED_PROMPT = (
    "The context above is a passage from the Python language reference ({title}). Write one "
    "question that a learner reading it would ask, then answer it using only the passage. "
    "Reply as:\nQuestion: ...\nAnswer: ..."
)


@dataclass(frozen=True)
class Prompt:
    """One instruction to the teacher, and where it came from."""

    prompt: str
    source: str  # the partition's file (or the shipped sample's name)
    line: int  # 1-based line (row) in the source
    task: str = USER_TASK
    system: str | None = None  # a per-row system prompt: replaces the template
    context: str | None = None  # a passage the answer is to be grounded in


def shipped_prompts() -> Iterator[Prompt]:
    """The instruction prompts shipped with the package."""
    source = f"batch_workflows/data/distillation/{PROMPTS_FILE}"
    for n, line in enumerate(SHIPPED_PROMPTS.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            yield Prompt(row["prompt"], source, n, task=row["task"])


def passages(text: str, max_chars: int) -> Iterator[str]:
    """Consecutive runs of whole paragraphs of `text`, each at most `max_chars` long (a longer
    paragraph is cut at the last space before the limit)."""
    current: list[str] = []
    size = 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        while len(para) > max_chars:  # one paragraph longer than a passage
            if current:
                yield "\n\n".join(current)
                current, size = [], 0
            cut = para.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            yield para[:cut].strip()
            para = para[cut:].strip()
        if current and size + 2 + len(para) > max_chars:
            yield "\n\n".join(current)
            current, size = [], 0
        if para:
            current.append(para)
            size += len(para) + (2 if size else 0)
    if current:
        yield "\n\n".join(current)


def grounded_prompts(passage_chars: int, passages_per_topic: int) -> Iterator[Prompt]:
    """Document-grounded tasks over the shipped pydoc corpus: the first passages of each topic
    as context, one task each. `line` numbers the tasks in order."""
    line = 0
    for doc in pydoc_documents():
        for i, passage in enumerate(passages(doc.text, passage_chars)):
            if i >= passages_per_topic:
                break
            line += 1
            title = doc.title or doc.id
            yield Prompt(GROUNDED_PROMPT.format(title=title), f"{PYDOC_SOURCE}:{doc.id}", line,
                         task=GROUNDED_TASK, context=passage)


def _text(problems: ProblemLog, line: int, column: str, value: Any, required: bool) -> str | None:
    if value is None or (not required and value == ""):
        if required:
            problems.add(line, column, "missing")
        return None
    if not isinstance(value, str):
        problems.add(line, column, f"must be a string, got {type(value).__name__}")
        return None
    if required and not value.strip():
        problems.add(line, column, "empty prompt")
        return None
    return value


def read_prompts(uri: str, *, prompt_column: str = "prompt", system_column: str = "system",
                 context_column: str = "context", source: str | None = None,
                 s3_client: Any = None) -> Iterator[Prompt]:
    """Stream the prompts of one JSONL, CSV or Parquet file; bad rows are raised together as
    one InvalidInputError at the end (file, 1-based line, column)."""
    problems = ProblemLog(source or uri)
    columns = [prompt_column], [system_column, context_column]
    for row in read_rows(uri, problems, *columns, s3_client=s3_client):
        v = row.values
        prompt = _text(problems, row.line, prompt_column, v[prompt_column], True)
        system = _text(problems, row.line, system_column, v.get(system_column), False)
        context = _text(problems, row.line, context_column, v.get(context_column), False)
        if prompt is not None:
            yield Prompt(prompt, problems.source, row.line, system=system, context=context)
    problems.raise_if_any()


def prompts_for_key(key: str, settings: Any, s3_client: Any = None) -> Iterator[Prompt]:
    """The prompts of one partition: a shipped sample's key, or a file under
    ``settings.watch_uri``."""
    if key == SAMPLE_PROMPTS:
        return shipped_prompts()
    if key == SAMPLE_PYDOC:
        return grounded_prompts(settings.passage_chars, settings.passages_per_topic)
    return read_prompts(join_uri(settings.watch_uri, key), prompt_column=settings.prompt_column,
                        system_column=settings.system_column,
                        context_column=settings.context_column, source=key,
                        s3_client=s3_client)
