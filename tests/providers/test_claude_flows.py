"""The distillation flow on provider 'anthropic' by configuration alone, through the repository's
Dagster assets, against the local engine's Anthropic Message Batches API.

The teacher is the engine's upstream mode (a real-time endpoint on loopback answering
"echo: <prompt>"; a prompt "status:400" fails every time), so the answers and counts are known.
Nothing in the flow changes: only the batch resource's `provider`.
"""

from __future__ import annotations

import json

import anthropic
import pytest
from dagster import DagsterInstance, materialize
from support.dagster_results import check_verdicts, materialization_metadata
from support.server import start_server
from support.upstream_server import RateLimitedEndpoint

import assets.distillation as flow
from assets.distillation.dataset import dataset_key
from batch_workflows.dagster import ArtifactStore, BatchResource
from batch_workflows.profiles import CHAT

FILE = "claude.jsonl"
PROMPTS = ["Explain what a list is.", "Name three colours.", "status:400",
           "Write a haiku about batches."]
SELECTION = [*flow.lifecycle.assets, flow.distillation_dataset, *flow.lifecycle.checks,
             *flow.checks]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("claude-distill")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / FILE).write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    mp = pytest.MonkeyPatch()
    # Anthropic has no seed: the flow's own setting turns it off (validation names body.seed
    # otherwise); temperature within Anthropic's 0-1.
    for name, value in {"WATCH_URI": str(inbox), "MODEL": "echo-teacher", "SAMPLES": "2",
                        "SEED": "none", "VALIDATION_FRACTION": "0.3"}.items():
        mp.setenv(f"DISTILLATION_{name}", value)
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
        instance.add_dynamic_partitions(flow.distillation_partitions.name, [FILE])
        yield {"root": root, "resources": resources, "instance": instance, "server": server}
    mp.undo()


def _run(env):
    return materialize(SELECTION, partition_key=FILE, resources=env["resources"],
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
    train = (env["root"] / "artifacts" / dataset_key(FILE, "train.jsonl")).read_text()
    valid = (env["root"] / "artifacts" / dataset_key(FILE, "validation.jsonl")).read_text()
    assert "echo: Name three colours." in train + valid
    card = json.loads((env["root"] / "artifacts" / dataset_key(FILE, "card.json")).read_text())
    assert card["teacher"]["model"] == "echo-teacher"


def test_a_second_materialization_submits_nothing(env):
    before = len(_message_batches(env))
    again = _run(env)
    batch = materialization_metadata(again, "distillation_batch")
    assert batch["batches_created"] == 0 and batch["reattached"] is True
    assert len(_message_batches(env)) == before
