"""Real provider behaviours against the engine as a real process: deployments sharing one
account, batches failed as a whole, and an enqueued-token quota (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from engine_helpers import MODEL, write_requests
from support.server import start_server

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.errors import NotFoundError
from batch_workflows.pricing import estimate_input_tokens
from batch_workflows.profiles import EMBEDDINGS, get_profile
from batch_workflows.wire import is_live

LIMIT = 400  # the quota server's enqueued-token limit, per model


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory):
    """An engine behaving like OpenAI: a small enqueued-token quota, unknown models refused."""
    with start_server(tmp_path_factory.mktemp("quota-server"), enqueued_token_limit=LIMIT,
                      organization="org-test", reject_unknown_models=True,
                      max_concurrent_batches=4, chunk_size=16) as srv:
        yield srv


def _policy(**kw) -> lc.Policy:
    return lc.Policy(get_profile("local"), **{"poll_interval": 0.1, "wait_timeout": 120, **kw})


def _requests(n: int, prefix: str, text: str = "hello", model: str = MODEL) -> list[dict]:
    return [{"custom_id": f"{prefix}{i}", "method": "POST", "url": EMBEDDINGS,
             "body": {"model": model, "input": f"{text} {i}"}} for i in range(n)]


# -- namespaces ----------------------------------------------------------------------------------

def test_two_deployments_on_one_account_never_touch_each_others_batches(server, tmp_path,
                                                                         asset_name):
    """Same flow and partition, different content, different artifact stores: neither
    cancels, adopts or collects the other's batches; each tracks only its own."""
    stores = {d: lc.LocalFolder(tmp_path / d) for d in ("staging", "prod")}
    policies = {d: _policy(namespace=lc.default_namespace(s)) for d, s in stores.items()}
    assert policies["staging"].namespace != policies["prod"].namespace  # nothing configured
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        pointers, submitted = {}, {}
        for d in ("staging", "prod"):
            pointers[d] = lc.write_requests(stores[d], asset_name, "2025-06-01", EMBEDDINGS,
                                            _requests(300, f"{d}-"), get_profile("local"),
                                            namespace=policies[d].namespace)
            submitted[d] = lc.submit_partition(client, stores[d], pointers[d], policies[d])
        assert pointers["staging"].key != pointers["prod"].key
        assert submitted["prod"].superseded == []  # staging's live batches were not cancelled
        staging_ids = submitted["staging"].manifest.batch_ids
        assert all(client.retrieve_batch(b)["status"] not in ("cancelling", "cancelled")
                   for b in staging_ids)
        # Each sees only its own batches: in the tracking scan and when re-attaching.
        for d, other in (("staging", "prod"), ("prod", "staging")):
            owner = lc.Owner(policies[d].namespace, stores[d])
            tick = lc.track_batches(client, asset_name, None, owner=owner)
            assert {o.submission_key for o in tick.observations} == {pointers[d].key}
            again = lc.submit_partition(client, stores[d], pointers[d], policies[d])
            assert again.manifest.reattached
            assert again.manifest.batch_ids == submitted[d].manifest.batch_ids
            assert not set(again.manifest.batch_ids) & set(submitted[other].manifest.batch_ids)
        for d in ("staging", "prod"):
            done = lc.collect_partition(client, stores[d], pointers[d], policies[d],
                                        blocking=True)
            rows = pq.read_table(done.results_uri, columns=["custom_id", "status"]).to_pylist()
            assert {r["custom_id"][: len(d)] for r in rows} == {d}
            assert done.summary.counts == {"succeeded": 300}
        meta = client.retrieve_batch(staging_ids[0])["metadata"]
        assert meta[lc.META_NAMESPACE] == policies["staging"].namespace
        # Changed content in staging supersedes staging's batches only.
        changed = lc.write_requests(stores["staging"], asset_name, "2025-06-01", EMBEDDINGS,
                                    _requests(40, "staging-v2-"), get_profile("local"),
                                    namespace=policies["staging"].namespace)
        prod_live = lc.iter_lifecycle_batches(
            client, asset=asset_name, owner=lc.Owner(policies["prod"].namespace, stores["prod"]))
        prod_before = {b["id"]: b["status"] for b in prod_live}
        lc.submit_partition(client, stores["staging"], changed, policies["staging"])
        for bid, status in prod_before.items():
            assert client.retrieve_batch(bid)["status"] == status


def test_batches_made_before_namespaces_stay_with_the_deployment_that_made_them(
        server, tmp_path, asset_name):
    """An un-namespaced submission recorded in store A is A's (re-attached, tracked), never B's."""
    store_a, store_b = lc.LocalFolder(tmp_path / "a"), lc.LocalFolder(tmp_path / "b")
    legacy = _policy()  # no namespace: how every batch was made before
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        pointer = lc.write_requests(store_a, asset_name, "p", EMBEDDINGS, _requests(20, "old-"),
                                    get_profile("local"))
        old = lc.submit_partition(client, store_a, pointer, legacy)
        assert lc.META_NAMESPACE not in client.retrieve_batch(old.manifest.batch_ids[0])["metadata"]
        ns_a, ns_b = lc.default_namespace(store_a), lc.default_namespace(store_b)
        a, b = lc.Owner(ns_a, store_a), lc.Owner(ns_b, store_b)
        batch = client.retrieve_batch(old.manifest.batch_ids[0])
        assert a.owns(batch) and not b.owns(batch)
        # A upgrades: the same content keeps its pre-namespace key and re-attaches.
        same = lc.write_requests(store_a, asset_name, "p", EMBEDDINGS, _requests(20, "old-"),
                                 get_profile("local"), namespace=ns_a)
        assert same.key == pointer.key
        again = lc.submit_partition(client, store_a, same, _policy(namespace=ns_a))
        assert again.manifest.reattached
        done = lc.collect_partition(client, store_a, same, _policy(namespace=ns_a), blocking=True)
        assert done.summary.counts == {"succeeded": 20}
        assert {o.submission_key for o in lc.track_batches(client, asset_name, None,
                                                           owner=b).observations} == set()


def test_cancel_command_touches_only_its_namespace(server, tmp_path, asset_name):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        subs = {}
        for ns in ("ns-a", "ns-b"):
            shard = write_requests(tmp_path / f"{ns}.jsonl", 400, prefix=ns)
            key = lc.submission_key(asset_name, "p", EMBEDDINGS, ns, MODEL, namespace=ns)
            subs[ns] = lc.submit(client, [shard], key, asset=asset_name, partition="p",
                                 endpoint=EMBEDDINGS, namespace=ns)
        env = {**os.environ, "BATCH_API_KEY": server.api_key}
        env.pop("BATCH_NAMESPACE", None)
        out = subprocess.run(
            [sys.executable, "-m", "batch_workflows.cli", "cancel", "--asset", asset_name,
             "--partition", "p", "--base-url", server.base_url, "--namespace", "ns-a"],
            capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        a, b = (client.retrieve_batch(subs[ns].batch_ids[0]) for ns in ("ns-a", "ns-b"))
        assert a["status"] in ("cancelling", "cancelled") or not is_live(a)
        assert b["status"] not in ("cancelling", "cancelled")
        lc.cancel(client, subs["ns-b"].batch_ids)


# -- batch-level failures ----------------------------------------------------------------------

def test_batch_failed_at_validation_is_reported_with_code_and_line_and_not_resubmitted(
        quota_server, tmp_path, asset_name):
    requests = _requests(5, "u-", model="no-such-model")
    with BatchClient(quota_server.base_url, api_key=quota_server.api_key) as client:
        outcome = lc.run_to_completion(client, requests, tmp_path / "work", name=asset_name,
                                       endpoint=EMBEDDINGS, policy=_policy(max_attempts=3))
        batch_id = outcome.attempts[0].batch_ids[0]
        batch = client.retrieve_batch(batch_id)
    assert batch["status"] == "failed"
    assert [a.attempt for a in outcome.attempts] == [1]  # an input defect is never resubmitted
    [failure] = outcome.summary.batch_failures
    assert failure["code"] == "model_not_found" and failure["line"] == 1
    assert failure["decision"] == "input" and failure["batch_id"] == batch_id
    assert "`no-such-model` does not exist" in failure["message"]
    rows = pq.read_table(outcome.results_path).to_pylist()
    assert len(rows) == 5 and {r["status"] for r in rows} == {"errored"}
    assert {r["error_code"] for r in rows} == {"model_not_found"}
    reason = rows[0]["error_message"]
    assert batch_id in reason and "line 1" in reason and "no-such-model" in reason


def test_engine_refuses_a_batch_over_the_quota_as_openai_does(quota_server, tmp_path):
    path = write_requests(tmp_path / "big.jsonl", 200, text="a longer text to count " * 3)
    assert estimate_input_tokens(path) > LIMIT
    with BatchClient(quota_server.base_url, api_key=quota_server.api_key) as client:
        batch = client.create_batch(client.upload_file(path)["id"], EMBEDDINGS)
        batch = client.wait_batch(batch["id"], poll_interval=0.1, timeout=60)
    assert batch["status"] == "failed"
    [error] = batch["errors"]["data"]
    assert error["code"] == "token_limit_exceeded"
    assert error["message"] == (
        f"Enqueued token limit reached for {MODEL} in organization org-test. Limit: 400 "
        "enqueued tokens. Please try again once some in_progress batches have been completed.")


def test_capacity_refusals_wait_without_spending_attempts_up_to_a_reported_deadline(
        quota_server, tmp_path, asset_name):
    """A shard the provider keeps refusing for capacity is created again in the same attempt
    until the capacity deadline, which the results then name."""
    requests = _requests(60, "c-", text="a longer text to count " * 3)
    # No limit declared on our side: only the provider knows its quota.
    policy = _policy(max_attempts=3, capacity_timeout=3.0)
    with BatchClient(quota_server.base_url, api_key=quota_server.api_key) as client:
        outcome = lc.run_to_completion(client, requests, tmp_path / "work", name=asset_name,
                                       endpoint=EMBEDDINGS, policy=policy)
    assert [a.attempt for a in outcome.attempts] == [1]
    [shard] = outcome.attempts[0].batches
    assert shard.replaced  # created again, not a new attempt
    [failure] = outcome.summary.batch_failures
    assert failure["code"] == "token_limit_exceeded" and failure["decision"] == "capacity"
    assert "capacity deadline of 3s reached" in failure["message"]
    assert outcome.summary.counts == {"errored": 60}


# -- the quota ---------------------------------------------------------------------------------

def test_partition_larger_than_the_quota_completes_in_waves_with_nothing_lost(
        quota_server, tmp_path, asset_name):
    requests = _requests(120, "q-", text="a sentence of some forty characters long")
    profile = get_profile("local").with_limits(default_enqueued_token_limit=LIMIT)
    store = lc.LocalFolder(tmp_path / "work")
    pointer = lc.write_requests(store, asset_name, None, EMBEDDINGS, requests, profile)
    total = sum(estimate_input_tokens(store.path(s.artifact)) for s in pointer.shards)
    assert total > 2 * LIMIT  # the partition needs at least three waves
    assert all(estimate_input_tokens(store.path(s.artifact)) <= lc.shard_token_cap(LIMIT)
               for s in pointer.shards)
    policy = lc.Policy(profile, poll_interval=0.1, wait_timeout=120)
    with BatchClient(quota_server.base_url, api_key=quota_server.api_key) as client:
        lc.submit_partition(client, store, pointer, policy)
        done = lc.collect_partition(client, store, pointer, policy, blocking=True)
        batches = [client.retrieve_batch(b) for b in done.summary.batch_ids]
        for batch in batches:  # input files are deleted once the results are stored
            with pytest.raises(NotFoundError):
                client.retrieve_file(batch["input_file_id"])
    assert done.summary.counts == {"succeeded": 120} and done.summary.accounted
    assert done.summary.attempts == 1 and not done.summary.batch_failures
    assert {b["status"] for b in batches} == {"completed"}  # no create was refused
    assert all(int(b["metadata"][lc.META_TOKENS]) <= lc.shard_token_cap(LIMIT) for b in batches)
    ids = pq.read_table(done.results_uri, columns=["custom_id"]).column("custom_id").to_pylist()
    assert sorted(ids) == sorted(f"q-{i}" for i in range(120))



def test_create_refused_with_429_is_waited_for_not_an_attempt(server, tmp_path, asset_name):
    """The provider answers 429 to creates (a real proxy in front of the engine): the
    lifecycle waits with backoff and creates the batch once, in attempt 1; past the capacity
    deadline it stops with a message naming it."""
    from support.proxy import FaultProxy

    from batch_workflows.client import Backoff
    from batch_workflows.errors import BatchTimeoutError

    with FaultProxy(server.base_url) as proxy:
        proxy.add("429", method="POST", path=r"/v1/batches", times=3, retry_after="0")
        with BatchClient(proxy.base_url, api_key=server.api_key, max_retries=0,
                         backoff=Backoff(0.01, 2.0, 0.05)) as client:
            outcome = lc.run_to_completion(client, _requests(4, "r429-"), tmp_path / "work",
                                           name=asset_name, endpoint=EMBEDDINGS,
                                           policy=_policy(poll_interval=0.05))
            assert proxy.injected[("429", "POST", "/v1/batches")] == 3
            assert proxy.count("POST", r"/v1/batches") == 1  # one batch reached the engine
            assert [a.attempt for a in outcome.attempts] == [1]
            assert outcome.summary.counts == {"succeeded": 4}
            proxy.add("429", method="POST", path=r"/v1/batches", times=None, retry_after="0")
            with pytest.raises(BatchTimeoutError, match="capacity deadline of 0.5s reached"):
                lc.run_to_completion(client, _requests(4, "never-"), tmp_path / "never",
                                     name=asset_name + "n", endpoint=EMBEDDINGS,
                                     policy=_policy(poll_interval=0.05, capacity_timeout=0.5))
