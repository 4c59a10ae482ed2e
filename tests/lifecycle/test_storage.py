"""The lifecycle's plain storages: a local folder, and S3 (moto's standalone server over
loopback) reached from the environment as the command line and a script reach it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.s3 import start_s3_server

from batch_workflows.lifecycle.storage import LocalFolder, S3Folder, Storage, open_storage


def _exercise(store: Storage, tmp_path: Path) -> None:
    assert store.list("a/") == [] and not store.exists("a/b/one.json")
    store.write_bytes("a/b/one.json", b"1")
    store.write_bytes("a/b/two.json", b"2")
    store.write_bytes("a/c.json", b"3")
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 100_000)
    store.put_file(source, "a/b/big.bin")
    assert store.list("a/b/") == ["a/b/big.bin", "a/b/one.json", "a/b/two.json"]
    assert store.list("a/b/t") == ["a/b/two.json"]  # a plain string prefix, as in S3
    assert store.read_bytes("a/b/one.json") == b"1"
    assert store.get_file("a/b/big.bin", tmp_path / "back.bin").read_bytes() == b"x" * 100_000
    store.delete("a/b/one.json")
    store.delete("a/b/one.json")  # a missing key is not an error
    assert not store.exists("a/b/one.json")
    assert store.list("a/") == ["a/b/big.bin", "a/b/two.json", "a/c.json"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/b/one.json")
    for bad in ("/", "../", "a/../b/"):
        with pytest.raises(ValueError):
            store.list(bad)


def test_local_folder(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'root'}")
    assert isinstance(store, LocalFolder)
    _exercise(store, tmp_path)
    assert not list((tmp_path / "root").rglob("*.artifact-tmp"))


def test_s3_folder_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with start_s3_server() as s3:
        s3.create_bucket("plain")
        for name, value in {**s3.env, "AWS_ENDPOINT_URL_S3": s3.endpoint_url}.items():
            monkeypatch.setenv(name, value)
        store = open_storage("s3://plain/deploy/")
        assert isinstance(store, S3Folder)
        _exercise(store, tmp_path)
        assert store.uri("a/c.json") == "s3://plain/deploy/a/c.json"
        # keys live under the prefix only
        objects = s3.client().list_objects_v2(Bucket="plain")["Contents"]
        assert all(o["Key"].startswith("deploy/a/") for o in objects)


def test_unsupported_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="gs://"):
        open_storage("gs://bucket/x")
