"""The lifecycle on provider 'anthropic', against the engine's Message Batches API (a real
server; the official SDK reads what the adapter made)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import pyarrow.parquet as pq
import pytest
from support.s3 import S3Server, start_s3_server
from support.server import ServerHandle, start_server
from support.tiny_chat import build_tiny_chat_model

from batch_workflows.anthropic_batches.client import AnthropicBatchClient
from batch_workflows.errors import BudgetExceededError, ConfigurationError, InvalidInputError
from batch_workflows.lifecycle import (
    LocalFolder,
    Owner,
    collect_partition,
    run_to_completion,
    submit_partition,
    track_batches,
    write_requests,
)
from batch_workflows.lifecycle.keys import partition_tag
from batch_workflows.lifecycle.policy import Budget, Policy
from batch_workflows.lifecycle.storage import S3Folder, Storage
from batch_workflows.pricing import PriceTable
from batch_workflows.profiles import CHAT, EMBEDDINGS, get_profile
from batch_workflows.provider_client import open_client

BUCKET = "claude-intents"
ODD_IDS = ["ticket/2025-06-01#3", "x" * 100, "plain_id-1", "ünïcode"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    tmp = tmp_path_factory.mktemp("anthropic-lifecycle")
    model_dir = build_tiny_chat_model(tmp / "tiny-chat")
    with start_server(tmp, chat_model=str(model_dir), api_key="sk-ant-lifecycle") as srv:
        yield srv, model_dir.name


def _client(srv: ServerHandle, state: Path | Storage, namespace: str | None = None,
            **kwargs: object) -> AnthropicBatchClient:
    store = state if not isinstance(state, Path) else LocalFolder(state)
    return AnthropicBatchClient(srv.base_url, api_key=srv.api_key, store=store,
                                namespace=namespace, max_retries=0, **kwargs)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with start_s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(params=["local", "s3"])
def intent_store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Where the intents live: a local folder, or S3 (moto's server) as a fresh container
    sees it, with nothing on the worker's disk."""
    if request.param == "local":
        return LocalFolder(tmp_path / "artifacts")
    server = request.getfixturevalue("s3")
    return S3Folder(f"s3://{BUCKET}/{tmp_path.name}", client=server.client())


def _policy() -> Policy:
    return Policy(get_profile("anthropic"), max_attempts=2, poll_interval=0.2,
                  wait_timeout=300)


def _requests(model: str, ids: list[str], **extra: object) -> list[dict]:
    return [{"custom_id": cid, "method": "POST", "url": CHAT,
             "body": {"model": model, "max_tokens": 4, "temperature": 0,
                      "messages": [{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": f"hello {cid}"}], **extra}}
            for cid in ids]


def _sdk_batches(srv: ServerHandle) -> list[str]:
    sdk = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)
    return [b.id for b in sdk.messages.batches.list(limit=1000)]


def test_a_partition_runs_on_message_batches_with_ids_mapped_back(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, model = engine
    with _client(srv, tmp_path / "state") as client:
        outcome = run_to_completion(client, _requests(model, ODD_IDS), tmp_path / "work",
                                    name="claude_flow", partition="2025-06-01", endpoint=CHAT,
                                    policy=_policy())
    assert outcome.summary.counts.get("succeeded") == len(ODD_IDS)
    table = pq.read_table(outcome.results_path).to_pylist()
    assert sorted(r["custom_id"] for r in table) == sorted(ODD_IDS)  # never truncated
    for row in table:
        assert row["finish_reason"] in ("stop", "length")
        assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 4
    assert outcome.summary.batch_ids[0].startswith("msgbatch_")
    assert outcome.summary.batch_ids[0] in _sdk_batches(srv)


class Crash(BaseException):
    """The process dies: nothing after this line of the client runs."""


class DiesAfterCreate(httpx.BaseTransport):
    """The network as it is: the create reaches the server, then the process dies before the
    answer is read (so the id is never recorded)."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/messages/batches"):
            response.read()
            raise Crash("killed between create sent and id recorded")
        return response


def test_a_crash_between_create_and_record_then_a_rerun_submits_nothing_new(
        engine: tuple[ServerHandle, str], intent_store: Storage, tmp_path: Path) -> None:
    srv, model = engine
    # Recovery matches a pending intent by creation time and request count, and cannot see the
    # intents of another store: each parameter's create has its own count, so that the batch
    # the other one made minutes ago on this shared engine is no candidate.
    n = 5 if isinstance(intent_store, LocalFolder) else 6
    requests = _requests(model, [f"c{i}" for i in range(n)])
    before = len(_sdk_batches(srv))
    with _client(srv, intent_store, "ns-crash", transport=DiesAfterCreate()) as client, \
            pytest.raises(Crash):
        run_to_completion(client, requests, tmp_path / "work", name="crashy",
                          partition="p1", endpoint=CHAT, policy=_policy())
    assert len(_sdk_batches(srv)) == before + 1  # the create went through
    # The intent was in the store before the create was sent; no batch id was recorded.
    pending = intent_store.list("_anthropic/ns-crash/pending/")
    assert len(pending) == 1 and not intent_store.list("_anthropic/ns-crash/batches/")
    # The re-run: a new process, on another machine (only the store is shared).
    with _client(srv, intent_store, "ns-crash") as client:
        outcome = run_to_completion(client, requests, tmp_path / "rerun", name="crashy",
                                    partition="p1", endpoint=CHAT, policy=_policy())
    assert len(_sdk_batches(srv)) == before + 1  # nothing new submitted, nothing paid twice
    assert outcome.summary.counts.get("succeeded") == n
    assert outcome.attempts[0].batches[0].reattached
    assert not intent_store.list("_anthropic/ns-crash/pending/")
    (bound,) = intent_store.list("_anthropic/ns-crash/batches/")
    assert bound.endswith(f"/{outcome.summary.batch_ids[0]}.json")


def test_parameters_without_a_counterpart_are_refused_before_anything_is_sent(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, model = engine
    before = len(_sdk_batches(srv))
    with _client(srv, tmp_path / "state") as client:
        with pytest.raises(InvalidInputError, match=r":2: body\.seed: has no Anthropic"):
            run_to_completion(client, [*_requests(model, ["a"]),
                                       *_requests(model, ["b"], seed=7)],
                              tmp_path / "w1", name="refused", endpoint=CHAT, policy=_policy())
        with pytest.raises(ConfigurationError, match="Anthropic has no embeddings endpoint"):
            run_to_completion(client, [{"custom_id": "e", "method": "POST", "url": EMBEDDINGS,
                                        "body": {"model": "m", "input": "x"}}],
                              tmp_path / "w2", name="emb", endpoint=EMBEDDINGS,
                              policy=_policy())
        with pytest.raises(InvalidInputError, match=r"body\.response_format.*json_object"):
            run_to_completion(client, _requests(model, ["j"],
                                                response_format={"type": "json_object"}),
                              tmp_path / "w3", name="json", endpoint=CHAT, policy=_policy())
    assert len(_sdk_batches(srv)) == before


def test_invalid_requests_are_reported_and_not_resubmitted(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, _ = engine
    with _client(srv, tmp_path / "state") as client:
        outcome = run_to_completion(client, _requests("claude-not-served", ["u1", "u2"]),
                                    tmp_path / "work", name="unknown_model", endpoint=CHAT,
                                    policy=_policy())
    assert outcome.summary.counts == {"failed": 2}
    assert outcome.summary.error_breakdown == {"not_found_error": 2}  # Anthropic's type
    assert len(outcome.attempts) == 1  # an invalid request fails again: not paid for twice
    rows = pq.read_table(outcome.results_path).to_pylist()
    assert all("claude-not-served" in r["error_message"] for r in rows)


class ResetAfterCreate(httpx.BaseTransport):
    """The first create reaches the server and its answer is lost (a connection reset): the
    client cannot know whether it went through."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.resets = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if (request.method == "POST" and request.url.path.endswith("/messages/batches")
                and not self.resets):
            response.read()
            self.resets += 1
            raise httpx.ReadError("connection reset by peer")
        return response


def test_a_lost_create_answer_is_recovered_without_a_second_batch(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, model = engine
    before = len(_sdk_batches(srv))
    transport = ResetAfterCreate()
    client = AnthropicBatchClient(srv.base_url, api_key=srv.api_key,
                                  store=LocalFolder(tmp_path / "s"), max_retries=2,
                                  transport=transport)
    with client:
        outcome = run_to_completion(client, _requests(model, ["l0", "l1", "l2"]),
                                    tmp_path / "work", name="lossy", endpoint=CHAT,
                                    policy=_policy())
    assert transport.resets == 1
    assert len(_sdk_batches(srv)) == before + 1
    assert outcome.summary.counts.get("succeeded") == 3


def test_shards_become_one_message_batch_each_and_the_cli_cancels_only_ours(
        engine: tuple[ServerHandle, str], s3: S3Server, tmp_path: Path) -> None:
    srv, model = engine
    # The deployment's artifact store on S3 holds the intents; the command reads them there.
    artifacts = f"s3://{BUCKET}/cli-{tmp_path.name}"
    state = S3Folder(artifacts, client=s3.client())
    store = LocalFolder(tmp_path / "work")
    profile = get_profile("anthropic").with_limits(max_requests_per_file=2)
    policy = Policy(profile, max_attempts=1, poll_interval=0.2, wait_timeout=300,
                    namespace="ns-claude")
    pointer = write_requests(store, "sharded", "p", CHAT,
                             _requests(model, [f"s{i}" for i in range(5)], max_tokens=64),
                             profile)
    sdk = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)
    # Someone else's batch in the workspace, ahead in the queue: ours stay in progress.
    blocker = sdk.messages.batches.create(requests=[
        {"custom_id": f"b{i}", "params": {"model": model, "max_tokens": 32, "messages": [
            {"role": "user", "content": "count"}]}} for i in range(1500)])
    with _client(srv, state, "ns-claude") as client:
        submitted = submit_partition(client, store, pointer, policy)
        ids = submitted.manifest.batch_ids
        assert len(ids) == 3 and all(i.startswith("msgbatch_") for i in ids)
        env = {**os.environ, **s3.env, "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
               "BATCH_API_KEY": srv.api_key, "BATCH_STATE_DIR": str(tmp_path / "nothing")}
        out = subprocess.run(
            [sys.executable, "-m", "batch_workflows.cli", "cancel", "--asset", "sharded",
             "--partition", "p", "--provider", "anthropic", "--base-url", srv.base_url,
             "--namespace", "ns-claude", "--artifacts-uri", artifacts],
            capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        named = {line.split()[1] for line in out.stdout.splitlines()
                 if line.startswith("cancelled ")}
        assert named <= set(ids)  # found through this deployment's intents, nothing else
        assert not (tmp_path / "nothing").exists()  # nothing read or written on local disk
        for batch_id in ids:  # every one of ours was cancelled, or ended before the cancel
            assert client.retrieve_batch(batch_id)["status"] in (
                "cancelling", "cancelled", "completed")
    assert sdk.messages.batches.retrieve(blocker.id).cancel_initiated_at is None  # not ours
    sdk.messages.batches.cancel(blocker.id)


def test_the_budget_prices_claude_and_refuses_before_anything_is_sent(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, _ = engine
    before = len(_sdk_batches(srv))
    prices = PriceTable.default()
    policy = Policy(get_profile("anthropic"), max_attempts=1, poll_interval=0.2,
                    budget=Budget(Decimal("0.0001"), prices), prices=prices)
    requests = _requests("claude-sonnet-4-5", [f"b{i}" for i in range(50)], max_tokens=1000)
    with _client(srv, tmp_path / "state") as client, \
            pytest.raises(BudgetExceededError, match=r"\$"):
        run_to_completion(client, requests, tmp_path / "work", name="pricey", endpoint=CHAT,
                          policy=policy)
    assert len(_sdk_batches(srv)) == before


def test_the_sensor_path_tracks_message_batches_of_this_deployment_then_collects(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, model = engine
    store = LocalFolder(tmp_path / "work")
    policy = Policy(get_profile("anthropic"), max_attempts=1, poll_interval=0.2,
                    namespace="ns-sensor")
    pointer = write_requests(store, "tracked", "d1", CHAT,
                             _requests(model, ["t0", "t1", "t2"]), policy.profile)
    owner = Owner("ns-sensor")
    with _client(srv, tmp_path / "state") as client:
        submit_partition(client, store, pointer, policy)  # returns once the batch exists
        cursor, ready = None, []
        deadline = time.monotonic() + 120
        while not ready:
            assert time.monotonic() < deadline
            tick = track_batches(client, "tracked", cursor, owner=owner)
            cursor, ready = tick.cursor, tick.ready
            time.sleep(0.2)
        assert [tag for tag, _ in ready] == [partition_tag("d1")]
        collected = collect_partition(client, store, pointer, policy, blocking=False)
    assert collected is not None and collected.summary.counts == {"succeeded": 3}


def test_without_an_artifact_store_the_intents_go_to_a_local_state_dir(
        engine: tuple[ServerHandle, str], tmp_path: Path) -> None:
    srv, model = engine
    with open_client("anthropic", srv.base_url, srv.api_key, state_dir=tmp_path / "state",
                     max_retries=0) as client:
        outcome = run_to_completion(client, _requests(model, ["d0", "d1"]), tmp_path / "work",
                                    name="direct", endpoint=CHAT, policy=_policy())
    assert outcome.summary.counts == {"succeeded": 2}
    folder = LocalFolder(tmp_path / "state")
    (bound,) = folder.list("_anthropic/_unscoped/batches/")
    assert bound.endswith(f"/{outcome.summary.batch_ids[0]}.json")
    assert not folder.list("_anthropic/_unscoped/pending/")
    # inputs are deleted with the batch's input file once the results are stored
    assert not folder.list("_anthropic/_unscoped/inputs/")


def _wait_ended(sdk: anthropic.Anthropic, batch_id: str, timeout: float = 240) -> object:
    deadline = time.monotonic() + timeout
    while (batch := sdk.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    return batch


def _result_ids(sdk: anthropic.Anthropic, batch_id: str, kind: str) -> set[str]:
    return {r.custom_id for r in sdk.messages.batches.results(batch_id) if r.result.type == kind}


def test_a_batch_cancelled_mid_run_through_the_sdk_resubmits_exactly_its_canceled_requests(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    tmp = tmp_path_factory.mktemp("anthropic-cancel")
    model_dir = build_tiny_chat_model(tmp / "tiny-chat")
    # Small chunks: the batch advances a few requests at a time, so a cancel lands mid-run.
    with start_server(tmp, chat_model=str(model_dir), api_key="sk-ant-cancel",
                      chunk_size=4) as srv:
        model = model_dir.name
        sdk = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)
        store = LocalFolder(tmp_path / "work")
        policy = Policy(get_profile("anthropic"), max_attempts=2, poll_interval=0.2,
                        wait_timeout=300, namespace="ns-cancel")
        ids = [f"k{i}" for i in range(600)]
        pointer = write_requests(store, "cancelled", "p", CHAT,
                                 _requests(model, ids, max_tokens=16), policy.profile)
        with _client(srv, store, "ns-cancel") as client:
            (first,) = submit_partition(client, store, pointer, policy).manifest.batch_ids
            deadline = time.monotonic() + 120
            while not sdk.messages.batches.retrieve(first).request_counts.succeeded:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            sdk.messages.batches.cancel(first)  # someone cancels it at Anthropic, mid-run
            ended = _wait_ended(sdk, first)
            canceled = _result_ids(sdk, first, "canceled")
            assert ended.request_counts.succeeded > 0 and len(canceled) == (
                ended.request_counts.canceled) > 0
            assert client.retrieve_batch(first)["status"] == "cancelled"
            # Re-running the partition (as after an interrupted run) re-attaches to the part-run
            # batch: what it did is paid for, nothing is created again
            again = submit_partition(client, store, pointer, policy)
            assert again.manifest.reattached and again.manifest.batch_ids == [first]
            collected = collect_partition(client, store, pointer, policy, blocking=True)
        assert collected is not None
        summary = collected.summary
        assert summary.attempts == 2 and summary.batch_ids[0] == first
        # exactly the canceled requests went into attempt 2: no succeeded one paid twice
        assert {r.custom_id for r in sdk.messages.batches.results(summary.batch_ids[1])} \
            == canceled
        assert summary.counts == {"succeeded": len(ids)}
        (failure,) = summary.batch_failures  # reported, with the batch, its status and counts
        assert failure["batch_id"] == first and failure["status"] == "cancelled"
        assert failure["decision"] == "resubmit"
        succeeded = ended.request_counts.succeeded
        assert f"{succeeded} of {len(ids)} request(s) completed" in failure["message"]


def test_expired_requests_are_resubmitted_within_the_attempts(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    tmp = tmp_path_factory.mktemp("anthropic-expiry")
    model_dir = build_tiny_chat_model(tmp / "tiny-chat")
    # A 4 s window (the engine's --completion-window): a long batch expires part way.
    with start_server(tmp, chat_model=str(model_dir), api_key="sk-ant-expiry",
                      completion_window="4s") as srv:
        model = model_dir.name
        sdk = anthropic.Anthropic(base_url=srv.root_url, api_key=srv.api_key, max_retries=0)
        store = LocalFolder(tmp_path / "work")
        policy = Policy(get_profile("anthropic"), max_attempts=2, poll_interval=0.2,
                        wait_timeout=300)
        ids = [f"e{i}" for i in range(3000)]
        pointer = write_requests(store, "expiring", "p", CHAT,
                                 _requests(model, ids, max_tokens=16), policy.profile)
        with _client(srv, store) as client:
            (first,) = submit_partition(client, store, pointer, policy).manifest.batch_ids
            ended = _wait_ended(sdk, first, timeout=60)
            expired = _result_ids(sdk, first, "expired")
            assert len(expired) == ended.request_counts.expired > 0
            collected = collect_partition(client, store, pointer, policy, blocking=True)
        assert collected is not None and collected.summary.attempts == 2
        second = collected.summary.batch_ids[1]
        # exactly the expired requests went into attempt 2 (which may expire part way too)
        assert {r.custom_id for r in sdk.messages.batches.results(second)} == expired
