"""BatchClient against the real local server (a subprocess), directly and through a
fault-injecting proxy (429 + Retry-After, 500, connection resets, truncated downloads)."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from support.proxy import FaultProxy
from support.server import start_server

from batch_workflows.client import IDEMPOTENCY_METADATA_KEY, Backoff, BatchClient, RetryEvent
from batch_workflows.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitError,
)

API_KEY = "sk-local-TOPSECRET-7f3a9c"
FAST = Backoff(initial=0.02, multiplier=2.0, maximum=0.2)
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with start_server(tmp_path_factory.mktemp("client-server"), api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
def client(server):
    with BatchClient(server.base_url, api_key=API_KEY, backoff=FAST) as c:
        yield c


@pytest.fixture
def proxy(server):
    with FaultProxy(server.base_url) as p:
        yield p


def _write_requests(path: Path, n: int, pad: int = 0) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            body = {"model": MODEL, "input": f"document number {i} " + "x" * pad}
            fh.write(json.dumps({"custom_id": f"req-{i}", "method": "POST",
                                 "url": "/v1/embeddings", "body": body}) + "\n")
    return path


@pytest.fixture(scope="session")
def small_file(server, tmp_path_factory) -> dict:
    """An uploaded 3-request input file shared by tests that only need some file id."""
    path = _write_requests(tmp_path_factory.mktemp("small") / "requests.jsonl", 3)
    with BatchClient(server.base_url, api_key=API_KEY, backoff=FAST) as c:
        return c.upload_file(path)


@pytest.fixture(scope="session")
def big_file(server, tmp_path_factory) -> tuple[dict, bytes]:
    """A ~2 MB uploaded file, for downloads that get truncated."""
    path = _write_requests(tmp_path_factory.mktemp("big") / "big.jsonl", 4000, pad=400)
    with BatchClient(server.base_url, api_key=API_KEY, backoff=FAST) as c:
        return c.upload_file(path), path.read_bytes()


# -- the happy path ------------------------------------------------------------------------

def test_upload_retrieve_download_delete(client: BatchClient, tmp_path: Path) -> None:
    src = _write_requests(tmp_path / "in.jsonl", 5)
    f = client.upload_file(src)
    assert f["object"] == "file" and f["purpose"] == "batch"
    assert f["bytes"] == src.stat().st_size and f["filename"] == "in.jsonl"
    assert client.retrieve_file(f["id"])["id"] == f["id"]

    size = client.download_file(f["id"], tmp_path / "out" / "copy.jsonl")
    assert size == src.stat().st_size
    assert (tmp_path / "out" / "copy.jsonl").read_bytes() == src.read_bytes()
    assert not (tmp_path / "out" / "copy.jsonl.part").exists()

    assert client.delete_file(f["id"])["deleted"] is True
    with pytest.raises(NotFoundError) as err:
        client.retrieve_file(f["id"])
    assert err.value.status_code == 404


def test_batch_runs_to_completion_and_output_downloads(client: BatchClient,
                                                      tmp_path: Path) -> None:
    src = _write_requests(tmp_path / "in.jsonl", 4)
    f = client.upload_file(src)
    batch = client.create_batch(f["id"], "/v1/embeddings", metadata={"flow": "test"},
                                extra_body={"override_settings": {"priority": "low"}})
    assert batch["object"] == "batch" and batch["endpoint"] == "/v1/embeddings"
    assert batch["input_file_id"] == f["id"] and batch["completion_window"] == "24h"
    assert batch["metadata"]["flow"] == "test"
    assert batch["metadata"][IDEMPOTENCY_METADATA_KEY].startswith("auto-")
    assert client.retrieve_batch(batch["id"])["id"] == batch["id"]

    done = client.wait_batch(batch["id"], poll_interval=0.2, timeout=180)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    out = tmp_path / "output.jsonl"
    size = client.download_file(done["output_file_id"], out)
    assert size == out.stat().st_size > 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i}" for i in range(4)]
    assert all(line["response"]["status_code"] == 200 for line in lines)
    assert len(lines[0]["response"]["body"]["data"][0]["embedding"]) == 384

    with pytest.raises(InvalidRequestError) as err:  # 409: nothing left to cancel
        client.cancel_batch(batch["id"])
    assert err.value.status_code == 409 and "cancel" in str(err.value).lower()


def test_cancel_a_running_batch(client: BatchClient, tmp_path: Path, small_file: dict) -> None:
    f = client.upload_file(_write_requests(tmp_path / "many.jsonl", 3000))
    key = f"cancel-{time.time_ns()}"
    batch = client.create_batch(f["id"], "/v1/embeddings", idempotency_key=key)
    cancelled = client.cancel_batch(batch["id"])
    assert cancelled["id"] == batch["id"]
    assert cancelled["status"] in ("cancelling", "cancelled")
    final = client.wait_batch(batch["id"], poll_interval=0.2, timeout=120)
    assert final["status"] == "cancelled"
    assert final["request_counts"]["completed"] < 3000
    # A cancelled batch is not re-attached to: the same key gets a fresh batch.
    again = client.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key)
    assert again["id"] != batch["id"]
    assert again["metadata"][IDEMPOTENCY_METADATA_KEY] == key


def test_list_paginates_and_find_by_metadata(client: BatchClient, proxy: FaultProxy,
                                            small_file: dict) -> None:
    tag = f"page-{time.time_ns()}"
    made = [client.create_batch(small_file["id"], "/v1/embeddings",
                                metadata={"tag": tag, "n": str(i)}) for i in range(5)]
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as via_proxy:
        listed = [b for b in via_proxy.list_batches(limit=2) if b["metadata"].get("tag") == tag]
    assert [b["id"] for b in listed] == [b["id"] for b in reversed(made)]  # newest first
    # At least the 5 new ones plus whatever else exists, 2 per page: 3 pages or more.
    assert proxy.forwarded[("GET", "/v1/batches")] >= 3
    pages = [e for e in proxy.log if e["path"] == "/v1/batches"]
    assert len(pages) == proxy.forwarded[("GET", "/v1/batches")]

    found = client.find_batches("tag", tag)
    assert {b["id"] for b in found} == {b["id"] for b in made}
    assert client.find_batches("n", "3", statuses={"nope"}) == []
    assert [b["id"] for b in client.find_batches("tag", tag, limit=3)
            if b["metadata"]["n"] == "3"] == [made[3]["id"]]


# -- typed errors ---------------------------------------------------------------------------

def test_typed_errors_carry_status_and_provider_message(client: BatchClient,
                                                       small_file: dict, server) -> None:
    with pytest.raises(NotFoundError) as nf:
        client.retrieve_batch("batch_does_not_exist")
    assert nf.value.status_code == 404 and "batch_does_not_exist" in str(nf.value)

    with pytest.raises(InvalidRequestError) as bad:
        client.create_batch(small_file["id"], "/v1/nope")
    # The provider's own error.message, verbatim.
    raw = httpx.post(server.base_url + "/batches", headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"input_file_id": small_file["id"], "endpoint": "/v1/nope"})
    assert raw.status_code == 400
    assert raw.json()["error"]["message"] in str(bad.value)
    assert bad.value.status_code == 400

    with pytest.raises(NotFoundError):
        client.create_batch("file-missing", "/v1/embeddings")

    wrong = "sk-WRONG-key-abcdef123"
    with BatchClient(server.base_url, api_key=wrong, backoff=FAST) as intruder:
        with pytest.raises(AuthenticationError) as auth:
            next(intruder.list_batches())
    assert auth.value.status_code == 401
    assert wrong not in str(auth.value) and wrong not in repr(auth.value)
    with BatchClient(server.base_url, backoff=FAST) as anonymous:
        with pytest.raises(AuthenticationError):
            anonymous.retrieve_file(small_file["id"])


def test_no_secret_in_errors_reprs_or_logs(server, proxy: FaultProxy, small_file: dict,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    # A leaky server that echoes the request headers (Authorization included) in a 500 body.
    proxy.add("echo", times=None)
    with BatchClient(proxy.base_url, api_key=API_KEY, max_retries=2, backoff=FAST) as c:
        texts.append(repr(c))
        with pytest.raises(ProviderError) as leaky:
            c.retrieve_file(small_file["id"])
        assert leaky.value.status_code == 500
        assert "***" in leaky.value.body_excerpt  # the echoed key, redacted
        texts += [str(leaky.value), repr(leaky.value), leaky.value.body_excerpt]
    proxy.clear()
    proxy.add("429", times=None, retry_after="0")
    with BatchClient(proxy.base_url, api_key=API_KEY, max_retries=1, backoff=FAST) as c:
        with pytest.raises(RateLimitError) as limited:
            c.create_batch(small_file["id"], "/v1/embeddings", idempotency_key="k-secret-test")
        texts += [str(limited.value), repr(limited.value)]
    with BatchClient(server.base_url, api_key=API_KEY, backoff=FAST) as c:
        for call in (lambda: c.retrieve_batch("batch_x"),
                     lambda: c.create_batch(small_file["id"], "/v1/nope")):
            with pytest.raises(ProviderError) as err:
                call()
            texts += [str(err.value), repr(err.value), err.value.body_excerpt]
    texts.append(caplog.text)
    for text in texts:
        assert API_KEY not in text
        assert "TOPSECRET" not in text


# -- through the fault-injecting proxy ---------------------------------------------------------

def test_429_with_retry_after_seconds_is_honoured(proxy: FaultProxy, small_file: dict) -> None:
    events: list[RetryEvent] = []
    proxy.add("429", method="GET", path=r"/v1/files/[^/]+", times=2, retry_after="1")
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST, on_retry=events.append) as c:
        start = time.monotonic()
        got = c.retrieve_file(small_file["id"])
        elapsed = time.monotonic() - start
    assert got["id"] == small_file["id"]
    assert [e.delay for e in events] == [1.0, 1.0]
    assert [e.reason for e in events] == ["HTTP 429", "HTTP 429"]
    assert elapsed >= 2.0
    assert proxy.count("GET", r"/v1/files/[^/]+", "received") == 3
    assert proxy.count("GET", r"/v1/files/[^/]+") == 1


def test_429_with_retry_after_http_date(proxy: FaultProxy, small_file: dict) -> None:
    events: list[RetryEvent] = []
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    proxy.add("429", method="GET", times=1, retry_after=when)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST, on_retry=events.append) as c:
        assert c.retrieve_file(small_file["id"])["id"] == small_file["id"]
    assert len(events) == 1 and 0.0 <= events[0].delay <= 2.0
    assert events[0].delay > 0.5  # the date was honoured, not the 20 ms backoff


def test_rate_limited_after_every_retry(proxy: FaultProxy, small_file: dict) -> None:
    proxy.add("429", times=None, retry_after="0")
    with BatchClient(proxy.base_url, api_key=API_KEY, max_retries=3, backoff=FAST) as c:
        with pytest.raises(RateLimitError) as err:
            c.retrieve_file(small_file["id"])
    assert err.value.status_code == 429
    assert "4 attempt" in str(err.value)
    assert "rate limited by proxy" in err.value.body_excerpt
    assert sum(proxy.received.values()) == 4 and sum(proxy.forwarded.values()) == 0


def test_server_errors_are_retried_then_reported(proxy: FaultProxy, tmp_path: Path) -> None:
    src = _write_requests(tmp_path / "in.jsonl", 2)
    proxy.add("500", method="POST", path="/v1/files", times=3)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        f = c.upload_file(src)
        assert c.retrieve_file(f["id"])["bytes"] == src.stat().st_size
    assert proxy.injected[("500", "POST", "/v1/files")] == 3
    assert proxy.forwarded[("POST", "/v1/files")] == 1

    proxy.clear()
    proxy.add("500", times=None)
    with BatchClient(proxy.base_url, api_key=API_KEY, max_retries=2, backoff=FAST) as c:
        with pytest.raises(ProviderError) as err:
            c.retrieve_file(f["id"])
    assert type(err.value) is ProviderError
    assert err.value.status_code == 500 and "injected failure" in err.value.body_excerpt


def test_connection_resets_are_retried(proxy: FaultProxy, small_file: dict) -> None:
    events: list[RetryEvent] = []
    proxy.add("reset", method="GET", times=2)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST, on_retry=events.append) as c:
        assert c.retrieve_file(small_file["id"])["id"] == small_file["id"]
    assert len(events) == 2
    assert proxy.injected[("reset", "GET", f"/v1/files/{small_file['id']}")] == 2


@pytest.mark.parametrize("fault", ["reset", "reset_after", "500"])
def test_create_through_a_fault_creates_exactly_one_batch(client: BatchClient, proxy: FaultProxy,
                                                          small_file: dict, fault: str) -> None:
    key = f"idem-{fault}-{time.time_ns()}"
    proxy.add(fault, method="POST", path="/v1/batches", times=1)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        batch = c.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key,
                               metadata={"flow": "idem"})
    assert batch["metadata"][IDEMPOTENCY_METADATA_KEY] == key
    assert proxy.injected[(fault, "POST", "/v1/batches")] == 1
    # Whether the failed attempt reached the server or not, the server saw one create.
    assert proxy.forwarded[("POST", "/v1/batches")] == 1
    assert [b["id"] for b in client.find_batches(IDEMPOTENCY_METADATA_KEY, key)] == [batch["id"]]


def test_create_without_key_through_reset_after_creates_one_batch(
        client: BatchClient, proxy: FaultProxy, small_file: dict) -> None:
    tag = f"auto-{time.time_ns()}"
    proxy.add("reset_after", method="POST", path="/v1/batches", times=1)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        batch = c.create_batch(small_file["id"], "/v1/embeddings", metadata={"tag": tag})
    assert proxy.forwarded[("POST", "/v1/batches")] == 1
    assert [b["id"] for b in client.find_batches("tag", tag)] == [batch["id"]]


def test_create_that_cannot_be_checked_is_not_blindly_retried(
        client: BatchClient, proxy: FaultProxy, small_file: dict) -> None:
    tag = f"full-{time.time_ns()}"
    metadata = {f"k{i}": "v" for i in range(15)} | {"tag": tag}  # 16 pairs: no room for a key
    proxy.add("reset_after", method="POST", path="/v1/batches", times=1)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        with pytest.raises(ProviderError, match="may have been applied"):
            c.create_batch(small_file["id"], "/v1/embeddings", metadata=metadata)
    assert proxy.forwarded[("POST", "/v1/batches")] == 1
    assert len(client.find_batches("tag", tag)) == 1  # the one that went through, no second


def test_create_again_with_the_same_key_reattaches(client: BatchClient, proxy: FaultProxy,
                                                    small_file: dict) -> None:
    key = f"again-{time.time_ns()}"
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        first = c.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key)
        second = c.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key)
    assert first["id"] == second["id"]
    assert proxy.forwarded[("POST", "/v1/batches")] == 1


def test_truncated_download_resumes_with_range(proxy: FaultProxy, big_file, tmp_path: Path) -> None:
    f, content = big_file
    path = f"/v1/files/{f['id']}/content"
    proxy.add("truncate", method="GET", path=path, times=2, keep=0.3)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        size = c.download_file(f["id"], tmp_path / "big.jsonl")
    assert size == len(content) == f["bytes"]
    assert (tmp_path / "big.jsonl").read_bytes() == content
    ranges = [e["range"] for e in proxy.log if e["path"] == path]
    assert len(ranges) == 3 and ranges[0] is None
    # Each retry asked only for what was missing.
    offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in ranges[1:]]
    assert 0 < offsets[0] < offsets[1] < len(content)


def test_truncated_download_restarts_when_ranges_are_ignored(server, big_file,
                                                             tmp_path: Path) -> None:
    f, content = big_file
    path = f"/v1/files/{f['id']}/content"
    with FaultProxy(server.base_url, ranges="strip") as proxy:
        proxy.add("truncate", method="GET", path=path, times=2, keep=0.5)
        with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
            size = c.download_file(f["id"], tmp_path / "big.jsonl")
        assert proxy.forwarded[("GET", path)] == 3
    assert size == len(content)
    assert (tmp_path / "big.jsonl").read_bytes() == content


def test_truncated_download_with_emulated_ranges_and_resets(server, big_file,
                                                            tmp_path: Path) -> None:
    f, content = big_file
    path = f"/v1/files/{f['id']}/content"
    with FaultProxy(server.base_url, ranges="emulate") as proxy:
        proxy.add("truncate", method="GET", path=path, times=1, keep=0.25)
        proxy.add("reset", method="GET", path=path, times=1)
        proxy.add("truncate", method="GET", path=path, times=1, keep=0.5)
        proxy.add("500", method="GET", path=path, times=1)
        with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
            size = c.download_file(f["id"], tmp_path / "big.jsonl")
    assert size == len(content)
    assert (tmp_path / "big.jsonl").read_bytes() == content


def test_download_that_stays_truncated_fails_cleanly(proxy: FaultProxy, big_file,
                                                     tmp_path: Path) -> None:
    f, _ = big_file
    proxy.add("truncate", method="GET", path=f"/v1/files/{f['id']}/content", times=None)
    with BatchClient(proxy.base_url, api_key=API_KEY, max_retries=2, backoff=FAST) as c:
        with pytest.raises(ProviderError, match="truncated download"):
            c.download_file(f["id"], tmp_path / "big.jsonl")
    assert not (tmp_path / "big.jsonl").exists()
    assert not (tmp_path / "big.jsonl.part").exists()


def test_delete_through_reset_after_counts_as_deleted(client: BatchClient, proxy: FaultProxy,
                                                      tmp_path: Path) -> None:
    f = client.upload_file(_write_requests(tmp_path / "gone.jsonl", 1))
    proxy.add("reset_after", method="DELETE", times=1)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        assert c.delete_file(f["id"])["deleted"] is True
    assert proxy.forwarded[("DELETE", f"/v1/files/{f['id']}")] == 2  # the retry found it gone
    with pytest.raises(NotFoundError):
        client.delete_file(f["id"])  # a plain 404 is still an error


def test_lookups_can_be_bounded_to_recent_batches(client: BatchClient, small_file: dict) -> None:
    key = f"recent-{time.time_ns()}"
    first = client.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key)
    recent = client.find_batches(IDEMPOTENCY_METADATA_KEY, key, created_after=first["created_at"])
    assert [b["id"] for b in recent] == [first["id"]]
    future = int(time.time()) + 3600
    assert client.find_batches(IDEMPOTENCY_METADATA_KEY, key, created_after=future) == []
    # Outside the window the old batch is not seen, so a new one is made.
    second = client.create_batch(small_file["id"], "/v1/embeddings", idempotency_key=key,
                                 created_after=future)
    assert second["id"] != first["id"]


_MEMORY_PROBE = """
import sys
from batch_workflows.client import BatchClient

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

base, key, path = sys.argv[1:4]
with BatchClient(base, api_key=key) as client:
    before = peak_mb()
    f = client.upload_file(path)
    size = client.download_file(f["id"], path + ".back")
    client.delete_file(f["id"])
print(before, peak_mb(), size)
"""


def test_upload_and_download_stream_from_and_to_disk(server, tmp_path: Path) -> None:
    """A 40 MB round trip in a fresh process leaves its peak memory nearly where it was."""
    import subprocess
    import sys

    src = tmp_path / "large.jsonl"
    line = json.dumps({"custom_id": "ID", "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": MODEL, "input": "y" * 1000}})
    with src.open("w") as fh:
        for i in range(40_000):
            fh.write(line.replace("ID", f"r{i}") + "\n")
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, server.base_url, API_KEY,
                          str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, size = (float(x) for x in out.stdout.split())
    assert size == src.stat().st_size > 40_000_000
    assert (tmp_path / "large.jsonl.back").read_bytes() == src.read_bytes()
    assert after - before < 15, f"peak memory grew {after - before:.1f} MB for a 40 MB file"


def test_every_nth_request_fails_and_all_calls_still_succeed(proxy: FaultProxy,
                                                             small_file: dict) -> None:
    path = f"/v1/files/{small_file['id']}"
    proxy.add("500", method="GET", path=path, every=3, times=None)
    with BatchClient(proxy.base_url, api_key=API_KEY, backoff=FAST) as c:
        for _ in range(9):
            assert c.retrieve_file(small_file["id"])["id"] == small_file["id"]
    injected = proxy.injected[("500", "GET", path)]
    assert injected == 4  # requests 3, 6, 9 and 12 of 13
    assert proxy.received[("GET", path)] == 9 + injected
    assert proxy.forwarded[("GET", path)] == 9
