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

from batch_workflows.lifecycle.storage import LocalFolder, S3Folder, check_key
from batch_workflows.s3 import is_s3 as is_s3_uri

__all__ = ["ArtifactStore", "check_key"]


def _resolved(value: str | None) -> str | None:
    """The value of an EnvVar field: Dagster resolves them in runs, not on direct use."""
    return value.get_value() if isinstance(value, EnvVar) else value


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

    def storage(self) -> LocalFolder | S3Folder:
        """The plain ``Storage`` behind this resource (``lifecycle.storage``): every operation
        below is its, with the S3 client built from this resource's settings."""
        if not self.is_s3:
            base = self.base_uri.removeprefix("file://")
            if "://" in base:
                raise ValueError(f"unsupported artifact URI scheme: {self.base_uri!r}")
            return LocalFolder(base)
        return S3Folder(self.base_uri, client=self._s3())

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
        return self.storage().uri(key)

    # -- operations --------------------------------------------------------------------------
    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        """Store a local file under `key` (streamed; atomic locally); returns its URI."""
        return self.storage().put_file(local_path, key)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        """Copy `key` to `local_path` (streamed); raises FileNotFoundError if absent."""
        return self.storage().get_file(key, local_path)

    def exists(self, key: str) -> bool:
        """Whether an artifact is stored under `key`."""
        return self.storage().exists(key)

    def read_bytes(self, key: str) -> bytes:
        """The whole content of a (small) artifact, e.g. a manifest."""
        return self.storage().read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key` (atomic and fsync'd locally); returns its URI."""
        return self.storage().write_bytes(key, data)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""
        return self.storage().list(prefix)

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""
        self.storage().delete(key)
