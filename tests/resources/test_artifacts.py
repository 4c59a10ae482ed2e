"""ArtifactStore on a local folder and on S3 (moto's standalone server over loopback)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server

from batch_workflows.dagster.resources.artifacts import ArtifactStore, check_key
from resources import artifact_store_from_env

BUCKET = "artifacts"


@pytest.fixture(scope="session")
def s3_server():
    with start_s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(base_uri=str(tmp_path / "store"))
    server = request.getfixturevalue("s3_server")
    # A fresh prefix per test: tests share the bucket, never each other's keys.
    return ArtifactStore(
        base_uri=f"s3://{BUCKET}/runs/{tmp_path.name}",
        s3_endpoint_url=server.endpoint_url,
        s3_region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_put_get_exists_list_delete(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "shard.jsonl"
    src.write_bytes(b'{"custom_id": "a"}\n{"custom_id": "b"}\n')
    uri = store.put_file(src, "emb/p1/shards/shard-00000.jsonl")
    assert uri == store.uri("emb/p1/shards/shard-00000.jsonl")
    assert uri.endswith("emb/p1/shards/shard-00000.jsonl")
    store.write_bytes("emb/p1/manifest.json", b'{"n": 2}')
    store.write_bytes("emb/p2/manifest.json", b"{}")
    store.write_bytes("other/x.txt", b"x")

    assert store.exists("emb/p1/shards/shard-00000.jsonl")
    assert not store.exists("emb/p1/shards/shard-00001.jsonl")
    assert store.read_bytes("emb/p1/manifest.json") == b'{"n": 2}'
    assert store.list("emb/") == [
        "emb/p1/manifest.json", "emb/p1/shards/shard-00000.jsonl", "emb/p2/manifest.json"]
    assert store.list("emb/p1") == ["emb/p1/manifest.json", "emb/p1/shards/shard-00000.jsonl"]
    assert store.list("nothing/") == []
    assert len(store.list()) == 4

    out = store.get_file("emb/p1/shards/shard-00000.jsonl", tmp_path / "back" / "s.jsonl")
    assert out.read_bytes() == src.read_bytes()

    store.delete("emb/p1/manifest.json")
    store.delete("emb/p1/manifest.json")  # deleting twice is fine
    assert not store.exists("emb/p1/manifest.json")
    assert "emb/p1/manifest.json" not in store.list()
    with pytest.raises(FileNotFoundError):
        store.read_bytes("emb/p1/manifest.json")
    with pytest.raises(FileNotFoundError):
        store.get_file("emb/p1/manifest.json", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_overwrite_replaces_content(store: ArtifactStore) -> None:
    store.write_bytes("m.json", b"old")
    store.write_bytes("m.json", b"new")
    assert store.read_bytes("m.json") == b"new"
    assert store.list() == ["m.json"]


def test_large_file_streams_both_ways(store: ArtifactStore, tmp_path: Path) -> None:
    # 12 MB: above boto's 8 MB multipart threshold, so S3 uploads in parts.
    src = tmp_path / "big.jsonl"
    block = os.urandom(1 << 20)
    with src.open("wb") as fh:
        for i in range(12):
            fh.write(block[i:] + block[:i])
    store.put_file(src, "raw/output.jsonl")
    back = store.get_file("raw/output.jsonl", tmp_path / "big-back.jsonl")
    assert back.stat().st_size == src.stat().st_size
    assert _sha(back) == _sha(src)


@pytest.mark.parametrize("key", ["/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a\\b",
                                 "", "C:/x", "a/./b"])
def test_rejects_unsafe_keys(store: ArtifactStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        store.write_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.uri(key)
    with pytest.raises(ValueError):
        store.exists(key)


def test_local_store_writes_under_base_only(tmp_path: Path) -> None:
    store = ArtifactStore(base_uri=f"file://{tmp_path}/base")
    store.write_bytes("a/b.txt", b"1")
    assert (tmp_path / "base" / "a" / "b.txt").read_bytes() == b"1"
    assert store.uri("a/b.txt") == str(tmp_path / "base" / "a" / "b.txt")
    assert [p.name for p in (tmp_path / "base" / "a").iterdir()] == ["b.txt"]  # no temp files left


def test_s3_keys_live_under_the_prefix(s3_server, tmp_path: Path) -> None:
    store = ArtifactStore(base_uri=f"s3://{BUCKET}/team/{tmp_path.name}/",
                          s3_endpoint_url=s3_server.endpoint_url, s3_region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    store.write_bytes("k.txt", b"v")
    assert store.uri("k.txt") == f"s3://{BUCKET}/team/{tmp_path.name}/k.txt"
    raw = s3_server.client().get_object(Bucket=BUCKET, Key=f"team/{tmp_path.name}/k.txt")
    assert raw["Body"].read() == b"v"


def test_from_env_reads_uri_and_keeps_credentials_as_env_vars(monkeypatch, s3_server,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("BATCH_ARTIFACTS_URI", f"s3://{BUCKET}/env/{tmp_path.name}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    store = artifact_store_from_env()
    assert store.base_uri == f"s3://{BUCKET}/env/{tmp_path.name}"
    assert store.s3_endpoint_url == s3_server.endpoint_url
    store.write_bytes("x", b"1")
    assert store.read_bytes("x") == b"1"

    monkeypatch.delenv("BATCH_ARTIFACTS_URI")
    assert artifact_store_from_env(str(tmp_path / "d")).base_uri == str(tmp_path / "d")


def test_resource_in_a_dagster_asset(tmp_path: Path) -> None:
    import dagster as dg

    @dg.asset
    def manifest(artifacts: ArtifactStore) -> None:
        artifacts.write_bytes("m/manifest.json", b'{"ok": true}')

    result = dg.materialize([manifest],
                            resources={"artifacts": ArtifactStore(base_uri=str(tmp_path / "a"))})
    assert result.success
    assert (tmp_path / "a" / "m" / "manifest.json").read_bytes() == b'{"ok": true}'
