"""Where the lifecycle keeps its artifacts: files by key under one root.

``Storage`` is the small protocol the lifecycle needs; ``LocalFolder`` implements it on a
folder, ``S3Folder`` under ``s3://bucket/prefix`` (a boto3 client from the environment), and
``open_storage`` picks one for a URI. The Dagster resource ``ArtifactStore`` is these two behind
a ``ConfigurableResource``. Keys are relative posix paths such as
``embeddings/p1/results.parquet``. Large files move with ``put_file``/``get_file`` (streamed),
never through memory. A write returns once the data is durable (fsync'd locally; S3 answers a
PUT once it is stored): what the lifecycle writes before calling a provider survives a crash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from batch_workflows.s3 import is_s3, make_s3_client, split_s3_prefix

TEMP_SUFFIX = ".artifact-tmp"


class Storage(Protocol):
    """Files by key: what the lifecycle reads and writes."""

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str: ...
    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> str: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative posix path; raise ValueError otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError("artifact key must be a non-empty string")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise ValueError(f"artifact key must be a relative posix path: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"artifact key must not contain empty, '.' or '..' parts: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """`prefix` if it is "" or a safe key prefix ("a/b/" or "a/b" are; "/" and "../" are not)."""
    if prefix:
        check_key(prefix.rstrip("/") or "/")
    return prefix


def open_storage(uri: str | os.PathLike[str]) -> LocalFolder | S3Folder:
    """The storage behind `uri`: ``S3Folder`` for ``s3://bucket/prefix`` (credentials and
    endpoint from the environment), else ``LocalFolder`` on the path (``file://`` allowed)."""
    text = os.fspath(uri)
    if is_s3(text):
        return S3Folder(text)
    base = text.removeprefix("file://")
    if "://" in base:
        raise ValueError(f"unsupported storage URI scheme: {text!r}")
    return LocalFolder(base)


class LocalFolder:
    """``Storage`` on a local folder; writes are atomic (a crash leaves the old file or none)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, key: str) -> Path:
        """The file behind `key`."""
        return self.root.joinpath(*check_key(key).split("/"))

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        dest = self.path(key)
        if source.resolve() != dest:  # already in place when the caller wrote it there
            with atomic_target(dest, durable=True) as tmp:
                shutil.copyfile(source, tmp)
        return str(dest)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        source, dest = self.path(key), Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no artifact at {source}")
        with atomic_target(dest) as tmp:
            shutil.copyfile(source, tmp)
        return dest

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no artifact at {path}")
        return path.read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        dest = self.path(key)
        with atomic_target(dest, durable=True) as tmp:
            tmp.write_bytes(data)
        return str(dest)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""
        folder = check_prefix(prefix).rpartition("/")[0]
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.endswith(TEMP_SUFFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""
        self.path(key).unlink(missing_ok=True)


class S3Folder:
    """``Storage`` under ``s3://bucket/prefix``: keys are object keys below the prefix.

    `client` is a boto3 S3 client; None makes one from the environment (``s3.make_s3_client``:
    boto's credential chain, ``AWS_ENDPOINT_URL_S3`` for an S3-compatible store).
    """

    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, self.prefix = split_s3_prefix(uri)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client()
        return self._client

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        self.client.upload_file(str(source), self.bucket, self.object_key(key))
        return self.uri(key)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        if not self.exists(key):
            raise FileNotFoundError(f"no artifact at {self.uri(key)}")
        dest = Path(local_path)
        with atomic_target(dest) as tmp:
            self.client.download_file(self.bucket, self.object_key(key), str(tmp))
        return dest

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if is_missing(exc):
                return False
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if is_missing(exc):
                raise FileNotFoundError(f"no artifact at {self.uri(key)}") from None
            raise
        with response["Body"] as body:
            return body.read()

    def write_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        return self.uri(key)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (paginated ``ListObjectsV2``), sorted."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + check_prefix(prefix))
        keys = [obj["Key"][len(self.prefix):] for page in pages
                for obj in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error (S3's own rule)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))


def is_missing(exc: Any) -> bool:
    """Whether a botocore ClientError says the object is not there."""
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class atomic_target:
    """A temporary sibling path that replaces `dest` only if the block succeeds; `durable`:
    the file and the rename are fsync'd before the block's exit returns."""

    def __init__(self, dest: Path, *, durable: bool = False) -> None:
        self.dest = dest
        self.durable = durable

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.",
                                    suffix=TEMP_SUFFIX)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            if self.durable:
                fsync_path(self.tmp)
            os.replace(self.tmp, self.dest)
            if self.durable:
                fsync_path(self.dest.parent)
        else:
            self.tmp.unlink(missing_ok=True)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file, or a folder (so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
