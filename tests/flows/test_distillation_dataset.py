"""The dataset step on real raw result files (joined by the real results join): every outcome,
counts that add up and are re-derived from the raw lines, the split, the formats, parts."""

from __future__ import annotations

import json
import random
from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distillation_helpers import Answer, answer_all, build, prompts_of

from batch_workflows.flows.distillation.card import card_data, readme
from batch_workflows.flows.distillation.dataset import build_dataset
from batch_workflows.flows.distillation.examples import EXAMPLE_FORMATS, example_lines, line_bytes
from batch_workflows.flows.distillation.requests import custom_id_of, prompt_id
from batch_workflows.flows.distillation.settings import DistillationSettings
from batch_workflows.flows.distillation.sft_rules import check_file
from batch_workflows.flows.distillation.split import split_of

VOCAB = [f"w{i}" for i in range(5000)]


def long_answer(rng: random.Random, words: int = 30) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """12 prompts x 2 samples; one request of each drop reason, the rest distinct answers."""
    folder = tmp_path_factory.mktemp("dataset")
    settings = DistillationSettings(samples=2, validation_fraction=0.3, seed=7)
    prompts = prompts_of([f"Question {i}: tell me about topic {i}." for i in range(12)])
    requests_path, table, requests = build(folder, prompts, settings)
    cid = {(i, k): custom_id_of(prompt_id(p), k) for i, p in enumerate(prompts) for k in (0, 1)}
    rng = random.Random(3)
    answers = {c: Answer(long_answer(rng)) for c in cid.values()}
    near = long_answer(rng, 80)
    near_words = near.split()
    near_words[-1] = "changed"  # Jaccard 77/79 over 3-grams: collides with probability 0.99
    expected = {
        cid[0, 0]: ("failed", Answer(status_code=500)),
        cid[0, 1]: ("errored", Answer(expired=True)),
        cid[1, 0]: ("missing", None),
        cid[1, 1]: ("finish_length", Answer("cut off in the mid", finish_reason="length")),
        cid[2, 0]: ("content_filter", Answer("", finish_reason="content_filter")),
        cid[2, 1]: ("empty", Answer("  \n ")),
        cid[3, 0]: ("refusal", Answer("I’m sorry, but I can’t help with that request.")),
        cid[4, 0]: ("over_token_limit", Answer(long_answer(rng), completion_tokens=3000)),
    }
    for c, (_, a) in expected.items():
        answers[c] = a
    # Kept although it contains a refusal phrase: not at the start.
    answers[cid[3, 1]] = Answer("Sure. I can't stress enough how useful generators are.")
    answers[cid[5, 0]] = answers[cid[5, 1]] = Answer("The  same answer for both samples.")
    answers[cid[6, 0]] = Answer(near)
    answers[cid[7, 0]] = Answer(" ".join(near_words))
    results = answer_all(folder, requests_path, answers)
    out = folder / "out"
    report = build_dataset(table, results, out, settings)
    return {"folder": folder, "out": out, "report": report, "requests": requests, "cid": cid,
            "expected": expected, "settings": settings, "table": table, "results": results}


def test_every_request_has_one_outcome_and_the_counts_add_up(case):
    report = case["report"]
    assert report.requests == len(case["requests"]) == 24
    want = Counter(reason for reason, _ in case["expected"].values())
    want.update(["exact_duplicate", "near_duplicate"])
    assert {k: v for k, v in report.dropped.items() if v} == dict(want)
    assert report.kept == 24 - 10 and report.adds_up
    dropped = pq.read_table(case["out"] / "dropped.parquet").to_pylist()
    kept_ids = pq.read_table(case["out"] / "metadata.parquet").column("custom_id").to_pylist()
    every = [r["custom_id"] for r in dropped] + kept_ids
    assert sorted(every) == sorted(r["custom_id"] for r in case["requests"])
    by_id = {r["custom_id"]: r["reason"] for r in dropped}
    for c, (reason, _) in case["expected"].items():
        assert by_id[c] == reason
    cid = case["cid"]
    # The later of two identical answers to one prompt, and one of two near-identical ones.
    assert by_id[cid[5, 1] if cid[5, 0] < cid[5, 1] else cid[5, 0]] == "exact_duplicate"
    assert sum(by_id.get(cid[i, 0]) == "near_duplicate" for i in (6, 7)) == 1
    assert cid[3, 1] in kept_ids


def test_counts_rederived_from_the_raw_result_files(case):
    """Status counts straight from output.jsonl / errors.jsonl equal the dataset's."""
    raw = Counter()
    seen = set()
    for name in ("output.jsonl", "errors.jsonl"):
        for line in (case["folder"] / name).read_bytes().splitlines():
            obj = orjson.loads(line)
            seen.add(obj["custom_id"])
            if obj["error"]:
                raw["errored"] += 1
            elif obj["response"]["status_code"] != 200:
                raw["failed"] += 1
            else:
                raw[obj["response"]["body"]["choices"][0]["finish_reason"]] += 1
    raw["missing"] = len(case["requests"]) - len(seen)
    d = case["report"].dropped
    assert (raw["failed"], raw["errored"], raw["missing"]) == (d["failed"], d["errored"],
                                                               d["missing"])
    assert raw["length"] == d["finish_length"] and raw["content_filter"] == d["content_filter"]


def test_lines_are_exactly_messages_and_valid_for_fine_tuning(case):
    out, report = case["out"], case["report"]
    lines = {s: (out / f"{s}.jsonl").read_bytes().splitlines() for s in ("train", "validation")}
    assert {s: len(v) for s, v in lines.items()} == report.splits
    assert report.splits["validation"] > 0 and report.splits["train"] > 0
    for s, rows in lines.items():
        assert check_file(str(out / f"{s}.jsonl")).ok
        for raw in rows:
            obj = json.loads(raw)
            assert list(obj) == ["messages"]
            assert [m["role"] for m in obj["messages"]] == ["system", "user", "assistant"]


def test_metadata_maps_every_line_and_the_split_follows_the_prompt(case):
    meta = pq.read_table(case["out"] / "metadata.parquet").to_pylist()
    fraction = case["settings"].validation_fraction
    splits_of_prompt: dict[str, set] = {}
    for row in meta:
        assert row["split"] == split_of(row["prompt_id"], fraction)
        splits_of_prompt.setdefault(row["prompt_id"], set()).add(row["split"])
        assert row["teacher_model"] == "teacher-1" and row["source"] == "test.jsonl"
    assert all(len(s) == 1 for s in splits_of_prompt.values())
    for split in ("train", "validation"):
        rows = [r for r in meta if r["split"] == split]
        assert sorted(r["line"] for r in rows) == list(range(1, len(rows) + 1))
        lines = (case["out"] / f"{split}.jsonl").read_bytes().splitlines()
        for r in rows:  # line n of the file is the answer the metadata names
            user = json.loads(lines[r["line"] - 1])["messages"][1]["content"]
            assert user.startswith(f"Question {r['source_line'] - 1}:")


def test_parts_give_the_same_figures(case, tmp_path):
    report = build_dataset(case["table"], case["results"], tmp_path, case["settings"],
                           part_bytes=2_000)
    assert report.outcomes == case["report"].outcomes
    assert sum(report.splits.values()) == case["report"].kept


def test_prompt_completion_format(case, tmp_path):
    settings = DistillationSettings(samples=2, format="prompt_completion", seed=7)
    build_dataset(case["table"], case["results"], tmp_path, settings)
    first = json.loads((tmp_path / "train.jsonl").read_bytes().splitlines()[0])
    assert set(first) == {"prompt", "completion"}
    assert first["prompt"].startswith(settings.system_prompt)
    assert check_file(str(tmp_path / "train.jsonl")).ok


def test_card_holds_every_count(case):
    report = case["report"].to_dict()
    card = card_data(report, partition="test.jsonl", settings=case["settings"], summary=None,
                     prompts={"prompts": 12, "repeated_prompts_not_sent": 0},
                     files={"train.jsonl": "training examples"})
    assert card["kept"] + card["dropped_total"] == card["requests_submitted"] == 24
    assert card["tokens"]["completion"]["p50"] == 10
    text = readme(card)
    assert text.startswith("---\nconfigs:")
    for reason, n in card["dropped"].items():
        assert f"| {reason} |" in text and n >= 0
    assert "| train | " in text and "p95" in text


def test_example_lines_are_the_bytes_orjson_writes():
    """Every character JSON escapes, quotes, backslashes, non-ASCII, nulls in every column."""
    for kind in (pa.string(), pa.large_string()):
        assert line_bytes(pa.array(["x", "a\n", "bc\n"], kind).slice(1)).to_pybytes() == b"a\nbc\n"
    rng = random.Random(4)
    alphabet = [chr(c) for c in range(0x80)] + ["é", "€", "\u2028", "😀", "\\u0041"]

    def text(null: float) -> str | None:
        if rng.random() < null:
            return None
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    for i in range(300):
        n = rng.randint(3, 10)
        columns = [[text(null) for _ in range(n)] for null in (0.3, 0.05, 0.05)]
        kind = pa.large_string() if i % 3 == 0 else pa.string()  # 64-bit offsets too
        arrays = [pa.array(c, kind).slice(1) for c in columns]  # sliced, as batches are
        rows = list(zip(*(c[1:] for c in columns), strict=True))
        for name, example in EXAMPLE_FORMATS.items():
            lines = example_lines(name, *arrays)
            assert line_bytes(lines).to_pybytes() == b"".join(
                orjson.dumps(example(*row)) + b"\n" for row in rows)
            assert line_bytes(lines.filter(pa.array([i % 2 == 0 for i in range(n - 1)]))
                              ).to_pybytes() == b"".join(
                orjson.dumps(example(*row)) + b"\n" for row in rows[::2])
