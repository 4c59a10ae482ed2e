"""batch_workflows.lifecycle against the real local server: no Dagster involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from engine_helpers import write_requests

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.errors import BatchTimeoutError, ConfigurationError
from batch_workflows.profiles import EMBEDDINGS, get_profile
from batch_workflows.wire import MAX_METADATA_PAIRS


def test_submission_key_depends_on_exactly_what_is_submitted():
    base = lc.submission_key("a", "p", EMBEDDINGS, "h1", "m", {"x": 1, "y": 2})
    assert base == lc.submission_key("a", "p", EMBEDDINGS, "h1", "m", {"y": 2, "x": 1})
    assert len(base) == 64
    for other in (
        lc.submission_key("b", "p", EMBEDDINGS, "h1", "m", {"x": 1, "y": 2}),
        lc.submission_key("a", "q", EMBEDDINGS, "h1", "m", {"x": 1, "y": 2}),
        lc.submission_key("a", "p", "/v1/chat/completions", "h1", "m", {"x": 1, "y": 2}),
        lc.submission_key("a", "p", EMBEDDINGS, "h2", "m", {"x": 1, "y": 2}),
        lc.submission_key("a", "p", EMBEDDINGS, "h1", "n", {"x": 1, "y": 2}),
        lc.submission_key("a", "p", EMBEDDINGS, "h1", "m", {"x": 1, "y": 3}),
    ):
        assert other != base


def test_batch_metadata_stays_within_provider_limits():
    meta = lc.batch_metadata("k" * 64, "asset", "p" * 600, 1, 0, 3, {"team": "ml"})
    assert len(meta) <= MAX_METADATA_PAIRS - 1  # room for the client's idempotency pair
    assert all(len(k) <= 64 and len(v) <= 512 for k, v in meta.items())
    assert meta[lc.META_PARTITION].startswith("sha256:")  # long keys are digested, not cut
    with pytest.raises(ConfigurationError, match="reserved"):
        lc.batch_metadata("k", "a", None, 1, 0, 1, {lc.META_KEY: "x"})
    with pytest.raises(ConfigurationError, match="extra metadata pairs"):
        lc.batch_metadata("k", "a", None, 1, 0, 1, {f"k{i}": "v" for i in range(10)})
    with pytest.raises(ConfigurationError, match="metadata key"):
        lc.batch_metadata("k", "a", None, 1, 0, 1, {"x" * 65: "v"})
    with pytest.raises(ConfigurationError, match="over 512"):
        lc.batch_metadata("k", "a", None, 1, 0, 1, {"x": "v" * 513})


def test_submit_is_idempotent_through_the_providers_list(server, tmp_path, asset_name):
    shards = [write_requests(tmp_path / f"s{i}.jsonl", 3, prefix=f"s{i}-") for i in range(2)]
    key = lc.submission_key(asset_name, "p", EMBEDDINGS, "content", "m")
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        first = lc.submit(client, shards, key, asset=asset_name, partition="p",
                          endpoint=EMBEDDINGS, metadata={"team": "ml"})
    assert first.created == 2 and not first.reattached
    assert first.request_counts == [3, 3]
    # A new process with no local state: the list says the batches exist.
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        again = lc.submit(client, shards, key, asset=asset_name, partition="p",
                          endpoint=EMBEDDINGS, metadata={"team": "ml"})
        assert again.reattached and again.batch_ids == first.batch_ids
        ours = list(lc.iter_lifecycle_batches(client, asset=asset_name))
        assert len(ours) == 2
        assert all(len(b["metadata"]) <= 16 and b["metadata"]["team"] == "ml" for b in ours)
        # Manifests round-trip through JSON.
        assert lc.SubmissionManifest.from_json(first.to_json()) == first
        batches = lc.wait(client, first.batch_ids, poll_interval=0.1, timeout=120)
        result = lc.collect(client, first, batches, shards, tmp_path / "collect")
    assert result.counts == {"succeeded": 6}
    assert result.unfinished == 0
    assert pq.read_table(result.path).num_rows == 6
    # Raw files are named by shard position, never by a provider-chosen string.
    assert [os.path.basename(p) for p in result.output_files] == [
        "shard-00000-output.jsonl", "shard-00001-output.jsonl"]


class CountingClient(BatchClient):
    """The real client, counting how often the provider's batch list is scanned."""

    scans = 0

    def list_batches(self, limit=100, after=None):
        self.scans += 1
        return super().list_batches(limit=limit, after=after)


def test_submit_scans_the_list_once_and_reattaches_without_reading_shards(
        server, tmp_path, asset_name):
    shards = [write_requests(tmp_path / f"s{i}.jsonl", 2, prefix=f"s{i}-") for i in range(3)]
    key = lc.submission_key(asset_name, None, EMBEDDINGS, "once", "m")
    retries = []
    with CountingClient(server.base_url, api_key=server.api_key,
                        on_retry=retries.append) as client:
        first = lc.submit(client, shards, key, asset=asset_name, partition=None,
                          endpoint=EMBEDDINGS)
        # Not 1 + one per shard: the client looks again only after an ambiguous failure (a
        # slow, loaded machine may cause one).
        assert first.created == 3 and client.scans <= 1 + len(retries)
        client.scans = 0
        existing = lc.find_submission(client, key, 1)
        # Shards that exist are never opened: their paths need not exist here.
        again = lc.submit(client, ["gone-0", "gone-1", "gone-2"], key, asset=asset_name,
                          partition=None, endpoint=EMBEDDINGS, request_counts=[2, 2, 2],
                          existing=existing)
        assert again.reattached and again.batch_ids == first.batch_ids
        assert client.scans <= 1 + len(retries)
        assert again.created_at <= first.created_at  # the provider's creation time


def test_one_reattach_rule_for_client_and_lifecycle(server, tmp_path, asset_name):
    """A failed batch stands for its submission (in both places); one cancelled before it
    completed anything does not."""
    from batch_workflows.client import is_reattachable

    # A line for another endpoint: the server rejects the input file, the batch is `failed`.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "m", "messages": []}}) + "\n")
    key = lc.submission_key(asset_name, None, EMBEDDINGS, "bad", "m")
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        sub = lc.submit(client, [bad], key, asset=asset_name, partition=None, endpoint=EMBEDDINGS)
        [done] = lc.wait(client, sub.batch_ids, poll_interval=0.1, timeout=120).values()
        assert done["status"] == "failed", done
        assert is_reattachable(done)
        assert lc.find_submission(client, key, 1)[0]["id"] == done["id"]
        again = client.create_batch(sub.file_ids[0], EMBEDDINGS,
                                    idempotency_key=lc.shard_idempotency_key(key, 1, 0))
        assert again["id"] == done["id"]
        # Cancelled before anything ran: nothing was paid, a new batch may take the key.
        assert not is_reattachable({"status": "cancelled"})
        assert not is_reattachable({"status": "cancelling",
                                    "request_counts": {"total": 4, "completed": 0, "failed": 4}})
        # Cancelled part way: what ran is paid for and kept; the rest is the next attempt's.
        assert is_reattachable({"status": "cancelled",
                                "request_counts": {"total": 4, "completed": 3, "failed": 0}})


def test_resolve_base_url_is_one_rule(monkeypatch):
    from batch_workflows.profiles import PROFILES, resolve_base_url

    monkeypatch.delenv("BATCH_BASE_URL", raising=False)
    monkeypatch.delenv("BATCH_PROVIDER", raising=False)
    assert resolve_base_url() == PROFILES["local"].base_url
    assert resolve_base_url("openai") == "https://api.openai.com/v1"
    monkeypatch.setenv("BATCH_PROVIDER", "nebius")
    assert resolve_base_url() == PROFILES["nebius"].base_url
    monkeypatch.setenv("BATCH_BASE_URL", "http://10.1.2.3:9/v1/")
    assert resolve_base_url() == "http://10.1.2.3:9/v1"
    assert resolve_base_url("openai", "http://x/v1") == "http://x/v1"
    assert resolve_base_url("openai", environ=None) == "https://api.openai.com/v1"
    with pytest.raises(ConfigurationError, match="BATCH_BASE_URL"):
        resolve_base_url("custom", environ=None)


def test_cancelled_shard_is_submitted_again_and_timeouts_raise(server, tmp_path, asset_name):
    shard = write_requests(tmp_path / "big.jsonl", 300)
    key = lc.submission_key(asset_name, None, EMBEDDINGS, "c", "m")
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        sub = lc.submit(client, [shard], key, asset=asset_name, partition=None,
                        endpoint=EMBEDDINGS)
        with pytest.raises(BatchTimeoutError, match="not terminal"):
            lc.wait(client, sub.batch_ids, poll_interval=0.01, timeout=0)
        lc.cancel(client, sub.batch_ids)
        again = lc.submit(client, [shard], key, asset=asset_name, partition=None,
                          endpoint=EMBEDDINGS)
        assert again.created == 1 and again.batch_ids != sub.batch_ids
        lc.cancel(client, again.batch_ids)
        done = lc.wait(client, sub.batch_ids + again.batch_ids, poll_interval=0.1, timeout=60)
        assert {b["status"] for b in done.values()} == {"cancelled"}


def _results_without(folder, requests, unfinished: set[str]):
    """A results Parquet where every request succeeded but those in `unfinished` (missing)."""
    from batch_workflows.requests import iter_requests
    from batch_workflows.results import join_results

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "out.jsonl"
    with open(out, "w") as fh:
        for r in iter_requests(requests):
            if r["custom_id"] in unfinished:
                continue
            body = {"object": "list", "model": "m",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                    "usage": {"prompt_tokens": 2, "total_tokens": 2}}
            fh.write(json.dumps({"id": "x", "custom_id": r["custom_id"], "error": None,
                                 "response": {"status_code": 200, "request_id": "q",
                                              "body": body}}) + "\n")
    return join_results([requests], [out], out_path=folder / "results.parquet").path


@pytest.mark.parametrize("partition_bytes", [lc.RETRY_PARTITION_BYTES, 256])
def test_retry_shards_hold_exactly_the_unfinished(tmp_path, partition_bytes):
    from batch_workflows.requests import iter_requests

    src = write_requests(tmp_path / "all.jsonl", 200)
    unfinished = {f"r{i}" for i in range(0, 200, 7)}
    results = _results_without(tmp_path / "some", src, unfinished)
    manifest = lc.write_retry_shards([src], results, tmp_path / "retry", get_profile("local"),
                                     endpoint=EMBEDDINGS, partition_bytes=partition_bytes)
    ids = [r["custom_id"] for s in manifest.shards for r in iter_requests(s.path)]
    assert sorted(ids) == sorted(unfinished)  # each exactly once
    # The temporary partitions are gone.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".retry-")]
    # Nothing unfinished: nothing is selected.
    done = _results_without(tmp_path / "all-done", src, set())
    assert list(lc.iter_unfinished_requests([src], done, tmp_path,
                                            partition_bytes=partition_bytes)) == []


def test_cancel_command_cancels_one_partition_through_the_list(server, tmp_path, asset_name):
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        subs = {}
        for part in ("keep", "stop"):
            shard = write_requests(tmp_path / f"{part}.jsonl", 400, prefix=part)
            key = lc.submission_key(asset_name, part, EMBEDDINGS, part, "m")
            subs[part] = lc.submit(client, [shard], key, asset=asset_name, partition=part,
                                   endpoint=EMBEDDINGS)
        env = {**os.environ, "BATCH_API_KEY": server.api_key}
        out = subprocess.run(
            [sys.executable, "-m", "batch_workflows.cli", "cancel", "--asset", asset_name,
             "--partition", "stop", "--base-url", server.base_url],
            capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert subs["stop"].batch_ids[0] in out.stdout
        stop = client.retrieve_batch(subs["stop"].batch_ids[0])
        keep = client.retrieve_batch(subs["keep"].batch_ids[0])
        assert stop["status"] in ("cancelling", "cancelled")
        assert keep["status"] not in ("cancelling", "cancelled")
        assert server.api_key not in out.stdout + out.stderr
        lc.cancel(client, subs["keep"].batch_ids)


def test_wait_for_capacity_honours_the_in_flight_cap(server, tmp_path, asset_name):
    shard = write_requests(tmp_path / "cap.jsonl", 400)
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        sub = lc.submit(client, [shard], "cap-" + asset_name, asset=asset_name, partition=None,
                        endpoint=EMBEDDINGS)
        in_flight = lc.count_in_flight(client)
        assert in_flight >= 1
        with pytest.raises(BatchTimeoutError, match="no room"):
            lc.wait_for_capacity(client, 1, in_flight, poll_interval=0.01, timeout=0)
        with pytest.raises(ConfigurationError, match="never fit"):
            lc.wait_for_capacity(client, 5, 4)
        lc.cancel(client, sub.batch_ids)


def test_run_to_completion_resubmits_exactly_the_failed(server, tmp_path, asset_name):
    import json

    from batch_workflows.requests import iter_requests

    path = tmp_path / "mixed.jsonl"
    with open(path, "w") as fh:
        for i in range(5):
            body = {"model": "all-MiniLM-L6-v2", "input": f"text {i}"}
            if i == 3:
                body["dimensions"] = 5  # unsupported: a 400 for this request only
            fh.write(json.dumps({"custom_id": f"m{i}", "method": "POST",
                                 "url": "/v1/embeddings", "body": body}) + "\n")
    policy = lc.Policy(get_profile("local"), max_attempts=3, poll_interval=0.1,
                       wait_timeout=120)
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        outcome = lc.run_to_completion(client, iter_requests(path), tmp_path / "work",
                                       name=asset_name, endpoint=EMBEDDINGS, policy=policy)
        assert [a.attempt for a in outcome.attempts] == [1, 2, 3]
        retried = [r["custom_id"] for r in
                   iter_requests(outcome.store.path(outcome.attempts[1].batches[0].input_path))]
        assert retried == ["m3"]
        assert outcome.summary.counts == {"succeeded": 4, "failed": 1}
        assert outcome.summary.error_breakdown == {"unsupported_parameter": 1}
        rows = pq.read_table(outcome.results_path).to_pylist()
        assert sorted(r["custom_id"] for r in rows) == [f"m{i}" for i in range(5)]
        # Again, as after a crash: every attempt re-attaches, nothing new is created.
        again = lc.run_to_completion(client, iter_requests(path), tmp_path / "work2",
                                     name=asset_name, endpoint=EMBEDDINGS, policy=policy)
        assert all(a.reattached for a in again.attempts)
        assert len(list(lc.iter_lifecycle_batches(client, asset=asset_name))) == 3
