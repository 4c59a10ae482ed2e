"""The fine-tuning format rules, line by line, and `batch-workflows sft-check` (exit codes as
`validate`: 0 valid, 1 invalid, 2 usage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from batch_workflows.flows.distillation.sft_rules import check_lines

CLI = Path(sys.executable).with_name("batch-workflows")
SYS = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi?"}
BOT = {"role": "assistant", "content": "Hello."}


def problems(*objs) -> list[str]:
    lines = [(o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs]
    return [str(p) for p in check_lines(lines, "f.jsonl").problems]


def test_valid_chat_lines():
    assert problems({"messages": [SYS, USER, BOT]}, {"messages": [USER, BOT, USER, BOT]},
                    {"messages": [USER, {**BOT, "weight": 0}, USER, {**BOT, "weight": 1}]}) == []


@pytest.mark.parametrize(("obj", "reason"), [
    ({"messages": []}, "f.jsonl:1: messages: must be a non-empty list"),
    ({"messages": [USER, BOT], "id": 3}, "f.jsonl:1: id: unknown top-level key"),
    ({"messages": [{"role": "user"}, BOT]}, "f.jsonl:1: messages[0].content: missing"),
    ({"messages": [{"content": "x"}, BOT]}, "f.jsonl:1: messages[0].role: missing"),
    ({"messages": [{**USER, "extra": 1}, BOT]}, "f.jsonl:1: messages[0].extra: unknown message key"),
    ({"messages": [{"role": "tool", "content": "x"}, BOT]}, "f.jsonl:1: messages[0].role: 'tool' is not one of"),
    ({"messages": [USER, {"role": "assistant", "content": " "}]}, "f.jsonl:1: messages[1].content: must be a non-empty string"),
    ({"messages": [USER, {"role": "assistant", "content": None}]}, "f.jsonl:1: messages[1].content: must be a non-empty string"),
    ({"messages": [USER]}, "f.jsonl:1: messages: no assistant message"),
    ({"messages": [BOT, USER, BOT]}, "f.jsonl:1: messages[0].role: the first message must be system or user"),
    ({"messages": [USER, USER, BOT]}, "f.jsonl:1: messages[1].role: expected assistant"),
    ({"messages": [USER, SYS, BOT]}, "f.jsonl:1: messages[1].role: expected assistant"),
    ({"messages": [USER, BOT, USER]}, "f.jsonl:1: messages[2].role: the last message must be the assistant's"),
    ({"messages": [{**USER, "weight": 1}, BOT]}, "f.jsonl:1: messages[0].weight: only assistant messages"),
    ({"messages": [USER, {**BOT, "weight": 0.5}]}, "f.jsonl:1: messages[1].weight: must be 0 or 1"),
    ({"messages": [USER, {**BOT, "weight": True}]}, "f.jsonl:1: messages[1].weight: must be 0 or 1"),
    ({"prompt": "a", "completion": ""}, "f.jsonl:1: completion: must be a non-empty string"),
    ({"prompt": "a"}, "f.jsonl:1: completion: missing"),
    ({"text": "a"}, "f.jsonl:1: neither a chat example"),
    ([1, 2], "f.jsonl:1: line is not a JSON object"),
    (b"{not json", "f.jsonl:1: not valid JSON"),
    (b"\xff\xfe{}", "f.jsonl:1: not UTF-8"),
])
def test_each_rule_names_line_field_and_reason(obj, reason):
    found = problems(obj)
    assert found and found[0].startswith(reason), found


def test_blank_lines_and_mixed_formats():
    lines = [json.dumps({"messages": [USER, BOT]}).encode() + b"\n", b"\n",
             json.dumps({"prompt": "a", "completion": "b"}).encode() + b"\n"]
    found = [str(p) for p in check_lines(lines, "f.jsonl").problems]
    assert found == ["f.jsonl:2: blank line",
                     "f.jsonl:3: prompt_completion example in a messages file (one format per file)"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "sft-check", *args], capture_output=True, text=True)


def test_cli_exit_codes_and_output(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"messages": [USER, BOT]}) + "\n" for _ in range(12)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [USER, BOT]}) + "\n"
                   + json.dumps({"messages": [USER]}) + "\n")
    ok = _cli(str(good))
    assert ok.returncode == 0 and "12 example(s)" in ok.stdout and ok.stderr == ""
    invalid = _cli(str(good), str(bad))
    assert invalid.returncode == 1
    assert invalid.stdout.splitlines() == [f"{bad}:2: messages: no assistant message"]
    assert f"warning: {bad}: 2 example(s)" in invalid.stderr
    assert _cli(str(tmp_path / "nope.jsonl")).returncode == 2
    assert _cli().returncode == 2
