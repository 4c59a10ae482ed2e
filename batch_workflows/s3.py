"""S3 locations: ``s3://bucket/key`` URIs, and a client configured from the environment.

The one place that parses an S3 URI: the flows' source readers (a watched prefix, an object to
read) and the artifact store (its base URI) both go through these functions.
"""

from __future__ import annotations

import os
from typing import Any

from batch_workflows.errors import ConfigurationError

SCHEME = "s3://"


def is_s3(uri: str) -> bool:
    """Whether `uri` names an S3 location (``s3://...``)."""
    return uri.startswith(SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); the key as written (may be empty)."""
    if not is_s3(uri):
        raise ConfigurationError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise ConfigurationError(f"not an S3 URI (no bucket): {uri}")
    return bucket, key


def split_s3_prefix(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (bucket, "a/b/"): the prefix of a folder-like root, ending in "/"
    so that it matches only keys below it; "" for the whole bucket."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def s3_endpoint_from_env() -> str | None:
    """The S3 endpoint of an S3-compatible store (MinIO, R2, moto): ``AWS_ENDPOINT_URL_S3``,
    else ``AWS_ENDPOINT_URL``, as boto's own configuration reads them; None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_s3_client() -> Any:
    """A boto3 S3 client from the environment: credentials by boto's default chain
    (``AWS_*`` variables, profiles, instance roles) and the endpoint of `s3_endpoint_from_env`."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint_from_env())


def s3_client_for(uri: str) -> Any:
    """A client from the environment when `uri` is on S3; None for a local path (readers then
    open files directly)."""
    return make_s3_client() if is_s3(uri) else None
