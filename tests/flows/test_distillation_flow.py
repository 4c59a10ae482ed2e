"""The distillation flow end to end in Dagster on the local engine: requests → batch → results
→ dataset and its checks, counts re-derived from the raw result files, the files loaded with
`datasets`, re-materialization, the inbox sensor.

The teacher is a real-time OpenAI-compatible endpoint on loopback behind the engine (its
upstream mode: each answer is "echo: <prompt>", and a prompt "status:400" fails every time),
so the answers, and so every count, are known; a second run drives the engine's own chat
backend (a tiny random-weight model: every answer is cut at max_tokens)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from support.dagster_results import check_verdicts, materialization_metadata
from support.server import start_server
from support.tiny_chat import build_tiny_chat_model
from support.upstream_server import RateLimitedEndpoint

from assets.flows import load_flow
from batch_workflows.dagster import ArtifactStore, BatchResource
from batch_workflows.flows.distillation.sft_rules import check_file
from batch_workflows.profiles import CHAT

FILE = "few.jsonl"
LONG = " ".join(f"word{i}" for i in range(60))
PROMPTS = ["Explain what a list is.", "Name three colours.", "status:400",
           "Explain what a list is.",  # a repeat: asked once
           f"Explain {LONG} end", f"Explain {LONG} fin",  # near-identical long answers
           "Write a haiku about batches."]


def _selection(flow):
    return [*flow.lifecycle.assets, flow.dataset, *flow.lifecycle.checks, *flow.checks]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / FILE).write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    mp = pytest.MonkeyPatch()
    for name, value in {"WATCH_URI": str(inbox), "MODEL": "echo-teacher", "SAMPLES": "2",
                        "VALIDATION_FRACTION": "0.3"}.items():
        mp.setenv(f"DISTILLATION_{name}", value)
    # assets/defs/distillation/defs.yaml, with the variables above as its templates resolve them.
    flow = load_flow("distillation")
    with (RateLimitedEndpoint() as upstream,
          start_server(root, upstream_url=upstream.base_url, upstream_endpoints=CHAT,
                       chunk_size=16) as server,
          DagsterInstance.ephemeral() as instance):
        resources = {
            "batch": BatchResource(provider="local", base_url=server.base_url,
                                   start_local_engine=False, poll_interval_seconds=0.2,
                                   blocking=True, max_attempts=1),
            "artifacts": ArtifactStore(base_uri=str(root / "artifacts")),
        }
        instance.add_dynamic_partitions(flow.partitions_def.name, [FILE])
        yield {"root": root, "inbox": inbox, "resources": resources, "instance": instance,
               "flow": flow}
    mp.undo()


def _run(env):
    return materialize(_selection(env["flow"]), partition_key=FILE, resources=env["resources"],
                       instance=env["instance"])


@pytest.fixture(scope="module")
def first(env):
    return _run(env)


def _dataset_file(env, name: str) -> Path:
    return env["root"] / "artifacts" / env["flow"].dataset_key(FILE, name)


def test_dataset_keeps_one_example_per_distinct_answer(env, first):
    meta = materialization_metadata(first, "distillation_dataset")
    assert materialization_metadata(first, "distillation_requests")["requests"] == 12  # 6 distinct prompts x 2
    assert meta["requests_submitted"] == 12 and meta["counts_add_up"] is True
    assert (meta["dropped_failed"], meta["dropped_exact_duplicate"],
            meta["dropped_near_duplicate"]) == (2, 5, 1)  # the 2nd samples echo the 1st
    assert meta["kept"] == 4 == meta["train"] + meta["validation"]
    assert sum(v for k, v in meta.items() if k.startswith("dropped_")) + meta["kept"] == 12
    checks = check_verdicts(first)
    assert checks["lines_valid_for_fine_tuning"] and checks["no_prompt_in_both_splits"]
    assert checks["counts_add_up"] and checks["all_requests_accounted"]
    assert checks["enough_training_examples"] is False  # 4 < 10: a warning, the run succeeded
    assert checks["error_rate"] is False  # 2 of 12 failed, above 5 %


def test_counts_rederived_from_the_raw_result_files(env, first):
    raw: dict[str, str] = {}
    for path in (env["root"] / "artifacts" / "distillation").rglob("raw/*"):
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            response = obj["response"]
            ok = response is not None and response["status_code"] == 200
            raw[obj["custom_id"]] = response["body"]["choices"][0]["message"]["content"] \
                if ok else "failed"
    assert len(raw) == 12
    dropped = pq.read_table(_dataset_file(env, "dropped.parquet")).to_pylist()
    reasons = Counter(r["reason"] for r in dropped)
    assert reasons["failed"] == sum(v == "failed" for v in raw.values())
    # Exact duplicates: answers equal to an answer of the same prompt's other sample.
    by_prompt = Counter((cid.rsplit("-s", 1)[0], text) for cid, text in raw.items()
                        if text != "failed")
    assert reasons["exact_duplicate"] == sum(n - 1 for n in by_prompt.values())
    kept = pq.read_table(_dataset_file(env, "metadata.parquet")).column("custom_id").to_pylist()
    assert sorted(kept + [r["custom_id"] for r in dropped]) == sorted(raw)
    card = json.loads(_dataset_file(env, "card.json").read_bytes())
    assert card["kept"] + card["dropped_total"] == card["requests_submitted"] == len(raw)
    assert card["teacher"]["model"] == "echo-teacher" and card["prompts"]["prompts"] == 6
    assert card["prompts"]["repeated_prompts_not_sent"] == 1


def test_files_load_with_datasets_and_pass_the_rules(env, first):
    datasets = pytest.importorskip("datasets")
    files = {s: str(_dataset_file(env, f"{s}.jsonl")) for s in ("train", "validation")}
    with tempfile.TemporaryDirectory() as cache:
        loaded = datasets.load_dataset("json", data_files={k: v for k, v in files.items()
                                                           if Path(v).stat().st_size},
                                       cache_dir=cache)
    rows = [row for split in loaded.values() for row in split]
    assert len(rows) == 4 and all(list(r) == ["messages"] for r in rows)
    assert {r["messages"][-1]["content"] for r in rows} >= {"echo: Name three colours."}
    assert all(check_file(path).ok for path in files.values())
    readme = _dataset_file(env, "README.md").read_text()
    assert readme.startswith("---\nconfigs:") and "| near_duplicate |" in readme


def test_second_materialization_submits_nothing(env, first):
    before = _dataset_file(env, "train.jsonl").read_bytes()
    again = _run(env)
    batch = materialization_metadata(again, "distillation_batch")
    assert batch["batches_created"] == 0 and batch["reattached"] is True
    assert batch["batch_ids"] == materialization_metadata(first, "distillation_batch")["batch_ids"]
    assert _dataset_file(env, "train.jsonl").read_bytes() == before


def test_inbox_sensor_registers_the_samples_and_runs_new_files(env):
    flow = env["flow"]
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance)
        result = flow.inbox_sensor(ctx)
        added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
        assert added == ["sample-prompts", "sample-pydoc", FILE]
        assert [r.partition_key for r in result.run_requests] == [FILE]
        assert flow.register_partitions(instance, added) == added
        assert flow.register_partitions(instance, added) == []


def test_the_engines_own_chat_model(tmp_path, monkeypatch):
    """The local engine's chat backend, end to end: a tiny random-weight model writes no
    useful text, so every answer runs to max_tokens and is dropped as cut off."""
    model = build_tiny_chat_model(tmp_path / "tiny-teacher")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / FILE).write_text('{"prompt": "Hi?"}\n{"prompt": "Why?"}\n')
    monkeypatch.setenv("DISTILLATION_WATCH_URI", str(tmp_path / "inbox"))
    monkeypatch.setenv("DISTILLATION_MODEL", "tiny-teacher")
    monkeypatch.setenv("DISTILLATION_MAX_TOKENS", "4")
    monkeypatch.setenv("DISTILLATION_SAMPLES", "1")  # the module's env asks for 2
    flow = load_flow("distillation")
    with (start_server(tmp_path, chat_model=str(model)) as server,
          DagsterInstance.ephemeral() as instance):
        instance.add_dynamic_partitions(flow.partitions_def.name, [FILE])
        result = materialize([*flow.lifecycle.assets, flow.dataset,
                              flow.counts_add_up], partition_key=FILE, instance=instance, resources={
            "batch": BatchResource(provider="local", base_url=server.base_url,
                                   start_local_engine=False, poll_interval_seconds=0.2,
                                   blocking=True),
            "artifacts": ArtifactStore(base_uri=str(tmp_path / "artifacts"))})
    meta = materialization_metadata(result, "distillation_dataset")
    assert meta["requests_submitted"] == 2
    assert meta["kept"] + meta["dropped_finish_length"] + meta["dropped_empty"] == 2
    assert check_verdicts(result) == {"counts_add_up": True}
