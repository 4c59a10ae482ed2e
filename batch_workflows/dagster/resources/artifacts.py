"""Artifact storage under one base URI: a local folder, or s3://bucket/prefix via dagster-aws.

Shards, raw output/error files, result Parquet and manifests all live under the same base, by
key: a relative posix path such as ``embeddings/2024-01-01/shards/shard-00000.jsonl``. Large
files are streamed (``put_file``/``get_file``), never read into memory.

The base URI has no default: a results run launched by a sensor may run in another container
than the submission, so both must name the same shared place (``s3://…`` in production).
Credentials for S3: leave them unset to use boto's default chain (``AWS_ACCESS_KEY_ID``,
profiles, instance roles), or pass ``EnvVar("...")`` so that Dagster resolves them at run time
and never shows their values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from batch_workflows.lifecycle.storage import LocalFolder, atomic_target, check_key
from batch_workflows.s3 import is_s3 as is_s3_uri
from batch_workflows.s3 import split_s3_prefix


def _resolved(value: str | None) -> str | None:
    """The value of an EnvVar field: Dagster resolves them in runs, not on direct use."""
    return value.get_value() if isinstance(value, EnvVar) else value


def _check_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/") or "x/")  # "a/b/" is a fine prefix, "/" is not
    return prefix


class ArtifactStore(ConfigurableResource):
    """Files by key under one base URI (a local folder by default, or ``s3://bucket/prefix``)."""

    base_uri: str = Field(
        description="Local folder (relative to the working directory, or file://) or s3://bucket/prefix.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for S3-compatible stores (MinIO, moto, R2)."
    )
    s3_region_name: str | None = Field(default=None, description="S3 region.")
    aws_access_key_id: str | None = Field(
        default=None, description="Use EnvVar('AWS_ACCESS_KEY_ID'); None = boto's default chain."
    )
    aws_secret_access_key: str | None = Field(
        default=None, description="Use EnvVar('AWS_SECRET_ACCESS_KEY'); None = boto's default chain."
    )
    aws_session_token: str | None = Field(default=None, description="Optional session token.")

    _client: Any = PrivateAttr(default=None)

    # -- where things are --------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return is_s3_uri(self.base_uri)

    def _bucket_prefix(self) -> tuple[str, str]:
        return split_s3_prefix(self.base_uri)

    def _local(self) -> LocalFolder:
        """The local folder behind a non-S3 base URI (a plain path or ``file://``)."""
        base = self.base_uri.removeprefix("file://")
        if "://" in base:
            raise ValueError(f"unsupported artifact URI scheme: {self.base_uri!r}")
        return LocalFolder(base)

    def _s3_key(self, key: str) -> str:
        return self._bucket_prefix()[1] + check_key(key)

    def _s3(self) -> Any:
        if self._client is None:
            resource = S3Resource(
                endpoint_url=_resolved(self.s3_endpoint_url),
                region_name=_resolved(self.s3_region_name),
                aws_access_key_id=_resolved(self.aws_access_key_id),
                aws_secret_access_key=_resolved(self.aws_secret_access_key),
                aws_session_token=_resolved(self.aws_session_token),
            )
            self._client = resource.get_client()
        return self._client

    def uri(self, key: str) -> str:
        """Where `key` lives: ``s3://bucket/prefix/key`` or an absolute local path."""
        if not self.is_s3:
            return self._local().uri(key)
        bucket, _ = self._bucket_prefix()
        return f"s3://{bucket}/{self._s3_key(key)}"

    # -- operations --------------------------------------------------------------------------
    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Store a local file under `key` (streamed; atomic locally); returns its URI."""
        if not self.is_s3:
            return self._local().put_file(local_path, key)
        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        bucket, _ = self._bucket_prefix()
        self._s3().upload_file(str(source), bucket, self._s3_key(key))
        return self.uri(key)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        """Copy `key` to `local_path` (streamed); raises FileNotFoundError if absent."""
        if not self.is_s3:
            return self._local().get_file(key, local_path)
        if not self.exists(key):
            raise FileNotFoundError(f"no artifact at {self.uri(key)}")
        bucket, _ = self._bucket_prefix()
        dest = Path(local_path)
        with atomic_target(dest) as tmp:
            self._s3().download_file(bucket, self._s3_key(key), str(tmp))
        return dest

    def exists(self, key: str) -> bool:
        """Whether an artifact is stored under `key`."""
        if not self.is_s3:
            return self._local().exists(key)
        from botocore.exceptions import ClientError

        bucket, _ = self._bucket_prefix()
        try:
            self._s3().head_object(Bucket=bucket, Key=self._s3_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def read_bytes(self, key: str) -> bytes:
        """The whole content of a (small) artifact, e.g. a manifest."""
        if not self.is_s3:
            return self._local().read_bytes(key)
        from botocore.exceptions import ClientError

        bucket, _ = self._bucket_prefix()
        try:
            response = self._s3().get_object(Bucket=bucket, Key=self._s3_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"no artifact at {self.uri(key)}") from None
            raise
        with response["Body"] as body:
            return body.read()

    def write_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key` (atomic locally); returns its URI."""
        if not self.is_s3:
            return self._local().write_bytes(key, data)
        bucket, _ = self._bucket_prefix()
        self._s3().put_object(Bucket=bucket, Key=self._s3_key(key), Body=data)
        return self.uri(key)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""
        _check_prefix(prefix)
        if not self.is_s3:
            return self._local().list(prefix)
        bucket, base = self._bucket_prefix()
        keys = []
        pages = self._s3().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=base + prefix)
        for page in pages:
            keys.extend(obj["Key"][len(base):] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""
        if not self.is_s3:
            return self._local().delete(key)
        bucket, _ = self._bucket_prefix()
        self._s3().delete_object(Bucket=bucket, Key=self._s3_key(key))


def _is_missing(exc: Any) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")
