"""The distillation flow's inputs and requests: the shipped sample, pydoc-grounded tasks, user
files, settings, content-derived ids, request bodies that pass the validator."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distillation_helpers import build, prompts_of

from batch_workflows.errors import ConfigurationError, InvalidInputError
from batch_workflows.flows.distillation.prompts import (
    GROUNDED_TASK,
    Prompt,
    grounded_prompts,
    passages,
    prompts_for_key,
    read_prompts,
    shipped_prompts,
)
from batch_workflows.flows.distillation.requests import prompt_id, prompt_id_of
from batch_workflows.flows.distillation.settings import DEFAULT_TEACHER, DistillationSettings
from batch_workflows.profiles import CHAT, get_profile
from batch_workflows.requests import validate_requests


def test_the_shipped_sample_has_200_varied_distinct_prompts():
    prompts = list(shipped_prompts())
    assert len(prompts) >= 200
    tasks = Counter(p.task for p in prompts)
    assert set(tasks) == {"explain", "summarise", "classify", "extract", "write_code", "rewrite"}
    assert min(tasks.values()) >= 30
    assert len({p.prompt for p in prompts}) == len(prompts)
    assert all(p.prompt.strip() and p.system is None and p.context is None for p in prompts)


def test_grounded_tasks_carry_a_passage_of_every_topic():
    tasks = list(grounded_prompts(passage_chars=1200, passages_per_topic=1))
    assert len(tasks) >= 70 and all(t.task == GROUNDED_TASK for t in tasks)
    assert all(0 < len(t.context) <= 1200 for t in tasks)
    assert len({t.source for t in tasks}) == len(tasks)
    assert any(t.source == "pydoc_data:try" for t in tasks)
    assert len(list(grounded_prompts(1200, 2))) > len(tasks)


def test_passages_keep_whole_paragraphs_and_cut_long_ones_at_spaces():
    text = "one two\n\nthree four five\n\n" + "x " * 30
    out = list(passages(text, 20))
    assert out[0] == "one two" and out[1] == "three four five"
    assert all(len(p) <= 20 for p in out) and "".join(out).replace(" ", "").count("x") == 30


def test_user_files_in_three_formats(tmp_path):
    rows = [{"prompt": "Say hi.", "system": "Be terse.", "context": None},
            {"prompt": "Sum it up.", "system": None, "context": "A long story."}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["prompt", "system", "context"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.csv", "a.parquet"):
        got = list(read_prompts(str(tmp_path / name), source=name))
        assert [(p.prompt, p.system, p.context) for p in got] == [
            ("Say hi.", "Be terse.", None), ("Sum it up.", None, "A long story.")], name
        assert got[0].source == name


def test_bad_rows_stop_the_partition_with_line_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": ""}\n{"q": 1}\n{"prompt": 5}\nnot json\n')
    with pytest.raises(InvalidInputError) as err:
        list(read_prompts(str(path), source="bad.jsonl"))
    found = [str(p) for p in err.value.problems]
    assert found[:3] == ["bad.jsonl:2: prompt: empty prompt", "bad.jsonl:3: prompt: missing",
                         "bad.jsonl:4: prompt: must be a string, got int"]
    assert found[3].startswith("bad.jsonl:5: not valid JSON") and len(found) == 4


def test_settings_from_the_environment(monkeypatch):
    assert DistillationSettings.from_env().model == DEFAULT_TEACHER
    monkeypatch.setenv("DISTILLATION_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("DISTILLATION_SAMPLES", "3")
    monkeypatch.setenv("DISTILLATION_SEED", "none")
    monkeypatch.setenv("DISTILLATION_SYSTEM_PROMPT", "")
    s = DistillationSettings.from_env()
    assert (s.model, s.samples, s.seed, s.system_prompt) == ("gpt-4o-mini", 3, None, "")
    monkeypatch.setenv("DISTILLATION_TEMPERATURE", "none")  # not sent at all
    monkeypatch.setenv("DISTILLATION_TOP_P", "0.9")
    s = DistillationSettings.from_env()
    assert (s.temperature, s.top_p) == (None, 0.9)
    assert s.sampling == {"top_p": 0.9, "max_tokens": s.max_tokens}
    monkeypatch.setenv("DISTILLATION_TEMPERATURE", "hot")
    with pytest.raises(ConfigurationError, match='DISTILLATION_TEMPERATURE must be a number or "none"'):
        DistillationSettings.from_env()
    with pytest.raises(ConfigurationError, match="FORMAT"):
        DistillationSettings(format="alpaca")


def test_ids_come_from_the_content(tmp_path):
    a = Prompt("Explain sets.", "x.jsonl", 1)
    assert prompt_id(a) == prompt_id(Prompt("Explain sets.", "other.csv", 9, task="t"))
    assert prompt_id(a) != prompt_id(Prompt("Explain sets.", "x.jsonl", 1, context="c"))
    assert prompt_id(a) != prompt_id(Prompt("Explain sets!", "x.jsonl", 1))
    s = DistillationSettings(samples=2, seed=10)
    _, _, first = build(tmp_path / "1", prompts_of(["Explain sets.", "Explain dicts."]), s)
    _, _, again = build(tmp_path / "2", prompts_of(["Explain dicts.", "Explain sets."]), s)
    assert sorted(r["custom_id"] for r in first) == sorted(r["custom_id"] for r in again)
    assert prompt_id_of(first[1]["custom_id"]) == prompt_id(a)


def test_requests_pass_the_validator_with_samples_seeds_and_system(tmp_path):
    s = DistillationSettings(samples=2, seed=10, system_prompt="You write {task} answers.")
    prompts = [*prompts_of(["A?", "B?", "A?"]), Prompt("C?", "x", 4, system="Own system.")]
    _, table, requests = build(tmp_path, prompts, s)
    assert validate_requests(requests, get_profile("nebius"), CHAT).ok
    assert len(requests) == 6  # the repeated "A?" is asked once
    bodies = [r["body"] for r in requests]
    assert [b["seed"] for b in bodies[:2]] == [10, 11]
    assert bodies[0]["messages"][0] == {"role": "system", "content": "You write user answers."}
    assert bodies[-1]["messages"][0]["content"] == "Own system."
    assert {b["max_tokens"] for b in bodies} == {256} and bodies[0]["model"] == DEFAULT_TEACHER
    rows = pq.read_table(table).to_pylist()
    assert [r["custom_id"] for r in rows] == [r["custom_id"] for r in requests]
    assert rows[0]["user"] == "A?" and rows[0]["system"] == "You write user answers."


def test_context_goes_before_the_prompt_and_no_system_when_empty(tmp_path):
    s = DistillationSettings(system_prompt="")
    _, _, (request,) = build(tmp_path, [Prompt("Q?", "x", 1, context="Passage.")], s)
    assert request["body"]["messages"] == [
        {"role": "user", "content": "Context:\nPassage.\n\nQ?"}]


def test_partition_keys_pick_the_source(tmp_path):
    s = DistillationSettings(watch_uri=str(tmp_path))
    (tmp_path / "mine.jsonl").write_text('{"prompt": "Hello?"}\n')
    assert len(list(prompts_for_key("sample-prompts", s))) >= 200
    assert next(iter(prompts_for_key("sample-pydoc", s))).task == GROUNDED_TASK
    assert [p.prompt for p in prompts_for_key("mine.jsonl", s)] == ["Hello?"]
