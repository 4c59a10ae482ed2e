"""The distillation flow and the llm moderation strategy on provider 'anthropic' by configuration alone, through the repository's
Dagster assets, against the local engine's Anthropic Message Batches API.

The teacher is the engine's upstream mode (a real-time endpoint on loopback answering
"echo: <prompt>"; a prompt "status:400" fails every time), so the answers and counts are known.
Nothing in the flow changes: only the batch resource's `provider`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anthropic
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from support.dagster_results import check_verdicts, materialization_metadata
from support.server import start_server
from support.tiny_chat import build_tiny_chat_model
from support.upstream_server import RateLimitedEndpoint

from assets.flows import load_flow
from batch_workflows.dagster import ArtifactStore, BatchResource
from batch_workflows.flows.moderation.evaluate import SAMPLE_BACKLOG
from batch_workflows.profiles import CHAT

FILE = "claude.jsonl"
PROMPTS = ["Explain what a list is.", "Name three colours.", "status:400",
           "Write a haiku about batches."]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("claude-distill")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / FILE).write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    mp = pytest.MonkeyPatch()
    # Anthropic has no seed, and its current models take temperature or top_p, not both: the
    # flow's own settings turn them off (validation names body.seed / body.top_p otherwise).
    for name, value in {"WATCH_URI": str(inbox), "MODEL": "echo-teacher", "SAMPLES": "2",
                        "SEED": "none", "TOP_P": "none", "VALIDATION_FRACTION": "0.3"}.items():
        mp.setenv(f"DISTILLATION_{name}", value)
    # assets/defs/distillation/defs.yaml, with the variables above as its templates resolve them.
    flow = load_flow("distillation")
    with (RateLimitedEndpoint() as upstream,
          start_server(root, upstream_url=upstream.base_url, upstream_endpoints=CHAT,
                       chunk_size=16, api_key="sk-ant-local") as server,
          DagsterInstance.ephemeral() as instance):
        resources = {
            "batch": BatchResource(provider="anthropic", base_url=server.base_url,
                                   api_key=server.api_key, state_dir=str(root / "anthropic"),
                                   poll_interval_seconds=0.2, blocking=True, max_attempts=2),
            "artifacts": ArtifactStore(base_uri=str(root / "artifacts")),
        }
        instance.add_dynamic_partitions(flow.partitions_def.name, [FILE])
        yield {"root": root, "resources": resources, "instance": instance, "server": server,
               "flow": flow}
    mp.undo()


def _run(env):
    flow = env["flow"]
    selection = [*flow.lifecycle.assets, flow.dataset, *flow.lifecycle.checks, *flow.checks]
    return materialize(selection, partition_key=FILE, resources=env["resources"],
                       instance=env["instance"])


def _message_batches(env) -> list:
    server = env["server"]
    sdk = anthropic.Anthropic(base_url=server.root_url, api_key=server.api_key, max_retries=0)
    return list(sdk.messages.batches.list(limit=1000))


def test_distillation_runs_on_claude_by_configuration(env):
    result = _run(env)
    assert result.success
    meta = materialization_metadata(result, "distillation_dataset")
    assert meta["requests_submitted"] == 8 and meta["counts_add_up"] is True
    assert meta["dropped_failed"] == 2  # "status:400", both samples, not resubmitted
    assert meta["kept"] + sum(v for k, v in meta.items() if k.startswith("dropped_")) == 8
    checks = check_verdicts(result)
    assert checks["counts_add_up"] and checks["all_requests_accounted"]
    batches = _message_batches(env)
    assert len(batches) == 1 and batches[0].id.startswith("msgbatch_")  # one attempt
    dataset_key = env["flow"].dataset_key
    train = (env["root"] / "artifacts" / dataset_key(FILE, "train.jsonl")).read_text()
    valid = (env["root"] / "artifacts" / dataset_key(FILE, "validation.jsonl")).read_text()
    assert "echo: Name three colours." in train + valid
    card = json.loads((env["root"] / "artifacts" / dataset_key(FILE, "card.json")).read_text())
    assert card["teacher"]["model"] == "echo-teacher"
    # The create intents live in the artifact store under the deployment's namespace, bound to
    # the batch; nothing on the worker's disk (state_dir is for direct use without a store).
    intents = env["root"] / "artifacts" / "_anthropic"
    assert [p.stem for p in intents.glob("*/batches/*.json")] == [batches[0].id]
    assert not list(intents.glob("*/pending/*")) and not (env["root"] / "anthropic").exists()


def test_a_second_materialization_submits_nothing(env):
    before = len(_message_batches(env))
    again = _run(env)
    batch = materialization_metadata(again, "distillation_batch")
    assert batch["batches_created"] == 0 and batch["reattached"] is True
    assert len(_message_batches(env)) == before


LLM_DAY = "2025-03-06"
DAGSTER = Path(sys.executable).with_name("dagster")


@pytest.fixture(scope="module")
def moderation_env(tmp_path_factory):
    """The engine's own chat backend (a tiny random-weight model): the judge's json_schema goes
    out as Anthropic's output_config.format and comes back constrained by the engine."""
    root = tmp_path_factory.mktemp("claude-moderation")
    inbox, home = root / "inbox", root / "home"
    inbox.mkdir()
    home.mkdir()
    lines = (SAMPLE_BACKLOG / f"{LLM_DAY}.jsonl").read_text().splitlines()
    (inbox / f"{LLM_DAY}.jsonl").write_text("\n".join(lines[:3]) + "\n")
    # The judge prompt is a policy of some thousand tokens (this tokenizer is tiny).
    model_dir = build_tiny_chat_model(root / "tiny-chat", context=8192)
    with start_server(root, chat_model=str(model_dir), api_key="sk-ant-local") as server:
        yield {"root": root, "server": server, "env": {
            **os.environ, "DAGSTER_HOME": str(home),
            # The whole configuration of Claude: provider, endpoint, key, intent folder.
            "BATCH_PROVIDER": "anthropic", "BATCH_BASE_URL": server.base_url,
            "BATCH_API_KEY": server.api_key, "BATCH_STATE_DIR": str(root / "anthropic"),
            "BATCH_BLOCKING": "1", "BATCH_POLL_INTERVAL": "0.3", "BATCH_MAX_ATTEMPTS": "1",
            "BATCH_ARTIFACTS_URI": str(root / "artifacts"), "QDRANT_PATH": str(root / "qdrant"),
            "MODERATION_WATCH_URI": str(inbox), "MODERATION_STRATEGY": "llm",
            "MODERATION_CHAT_MODEL": model_dir.name, "MODERATION_MAX_TOKENS": "48",
            "MODERATION_PROMPT_EXAMPLES": "0"}}


def test_the_llm_moderation_strategy_runs_on_claude_by_configuration(moderation_env):
    env = moderation_env
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "assets.definitions",
         "--select", "group:moderation", "--partition", LLM_DAY],
        capture_output=True, text=True, env=env["env"], timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    day = env["root"] / "artifacts" / "moderation" / LLM_DAY
    verdicts = pq.read_table(day / "verdicts.parquet").to_pylist()
    assert len(verdicts) == 3 and {v["strategy"] for v in verdicts} == {"llm"}
    for v in verdicts:  # strict reading: an ok verdict is the schema's object, nothing guessed
        if v["status"] == "ok":
            assert v["flagged"] == bool(v["categories"]) and isinstance(v["rationale"], str)
        else:
            assert v["status"] == "unparsed" and v["reason"] and v["flagged"] is None
    # The judge's json_schema went out as output_config.format: the engine constrained every
    # answer to the schema (cut at max_tokens here, so read strictly as unparsed).
    raw = [json.loads(line) for path in day.rglob("raw/*output*")
           for line in path.read_text().splitlines()]
    assert len(raw) == 3
    for line in raw:
        assert line["response"]["body"]["choices"][0]["message"]["content"].startswith(
            '{"flagged": ')
    assert [b.processing_status for b in _message_batches(env)] == ["ended"]
