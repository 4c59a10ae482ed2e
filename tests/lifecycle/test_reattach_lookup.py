"""Re-attaching never reads the account's whole batch history: the stored manifest names the
batches (read by id), and without one the list scan stops at the first create's record, or at
the oldest a live batch can be."""

from __future__ import annotations

import orjson

from batch_workflows import lifecycle as lc
from batch_workflows.client import BatchClient
from batch_workflows.profiles import EMBEDDINGS, get_profile
from batch_workflows.wire import is_terminal

SHARDS = 3


class CountingClient(BatchClient):
    """The real client, counting the pages of the batch list it reads."""

    pages = 0

    def _json(self, method, path, **kw):
        if method == "GET" and path == "/batches":
            self.pages += 1
        return super()._json(method, path, **kw)


def _setup(server, tmp_path, asset_name):
    store = lc.LocalFolder(tmp_path / "artifacts")
    policy = lc.Policy(get_profile("local").with_limits(max_requests_per_file=4),
                       poll_interval=0.1, wait_timeout=120, namespace="ns-lookup")
    requests = [{"custom_id": f"r{i}", "method": "POST", "url": EMBEDDINGS,
                 "body": {"model": "all-MiniLM-L6-v2", "input": f"text {i}"}}
                for i in range(4 * SHARDS)]
    pointer = lc.write_requests(store, asset_name, "p", EMBEDDINGS, requests, policy.profile,
                                namespace=policy.namespace)
    return store, policy, pointer


def test_a_stored_manifest_re_attaches_without_listing(server, tmp_path, asset_name):
    store, policy, pointer = _setup(server, tmp_path, asset_name)
    with CountingClient(server.base_url, api_key=server.api_key) as client:
        first = lc.submit_partition(client, store, pointer, policy).manifest
        assert len(first.batch_ids) == SHARDS and not first.reattached
        alayout = lc.PartitionLayout(asset_name, "p").attempt(pointer.key, 1)
        assert store.exists(alayout.creating)  # recorded before the first create was sent

        client.pages = 0  # what the superseded-batch cancel reads of the list on its own
        lc.cancel_partition(client, asset_name, "p", keep_key=pointer.key,
                            owner=lc.Owner(policy.namespace, store))
        cancel_pages, client.pages = client.pages, 0
        again = lc.submit_partition(client, store, pointer, policy).manifest
        assert again.reattached and again.batch_ids == first.batch_ids
        assert client.pages == cancel_pages  # each batch read by id: no list read to find them


def test_without_a_manifest_the_scan_finds_them_from_the_create_record(server, tmp_path,
                                                                        asset_name):
    """A crash after the creates, before the manifest: the re-run re-attaches (nothing paid
    twice), reading the list back to the record written before the first create only."""
    store, policy, pointer = _setup(server, tmp_path, asset_name)
    with BatchClient(server.base_url, api_key=server.api_key) as client:
        first = lc.submit_partition(client, store, pointer, policy).manifest
        alayout = lc.PartitionLayout(asset_name, "p").attempt(pointer.key, 1)
        store.delete(alayout.submission)  # as if the run died before writing it
        again = lc.submit_partition(client, store, pointer, policy).manifest
        assert again.reattached and again.batch_ids == first.batch_ids

        # A manifest naming a batch the provider no longer knows: found by the scan instead.
        broken = orjson.loads(store.read_bytes(alayout.submission))
        broken["batches"][0]["batch_id"] = "batch_unknown_to_the_provider"
        store.write_bytes(alayout.submission, orjson.dumps(broken))
        healed = lc.submit_partition(client, store, pointer, policy).manifest
        assert healed.reattached and healed.batch_ids == first.batch_ids

        batches = lc.wait(client, first.batch_ids, poll_interval=0.1, timeout=120)
        assert all(is_terminal(b) for b in batches.values())

