"""Submission keys and the metadata written on every batch.

The key is what makes submission idempotent: it is derived from what is submitted, goes into
every batch's ``metadata``, and a later submission with the same key re-attaches to those
batches instead of creating (and paying for) new ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from batch_workflows.errors import ConfigurationError
from batch_workflows.wire import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
)

META_KEY = "bw_key"  # the submission key (same for every attempt of one submission)
META_ASSET = "bw_asset"
META_PARTITION = "bw_partition"
META_ATTEMPT = "bw_attempt"
META_SHARD = "bw_shard"
META_SHARDS = "bw_shards"
META_NAMESPACE = "bw_ns"  # the deployment's namespace (absent on batches made before it)
META_TOKENS = "bw_tokens"  # estimated input tokens: what the batch holds of the model's quota
META_MODEL = "bw_model"
RESERVED_METADATA = (META_KEY, META_ASSET, META_PARTITION, META_ATTEMPT, META_SHARD, META_SHARDS,
                     META_NAMESPACE, META_TOKENS, META_MODEL)
# The client adds one pair of its own (its idempotency key).
_CLIENT_PAIRS = 1
MAX_USER_METADATA_PAIRS = MAX_METADATA_PAIRS - len(RESERVED_METADATA) - _CLIENT_PAIRS
HASHED_PREFIX = "sha256:"


def submission_key(
    asset: str,
    partition: str | None,
    endpoint: str,
    content_hash: str,
    model: str | None,
    params: Mapping[str, Any] | None = None,
    namespace: str | None = None,
) -> str:
    """The idempotency key of a submission: sha256 over what is submitted, hex.

    Same namespace, asset, partition, endpoint, shard content, model and (sorted) parameters →
    same key; anything changed → a new key. Two deployments (namespaces) never share a key.
    Without a namespace the key is the one made before namespaces existed.
    """
    payload = {
        "asset": asset,
        "partition": partition,
        "endpoint": endpoint,
        "content": content_hash,
        "model": model,
        "params": params or {},
    }
    if namespace:
        payload["namespace"] = namespace
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def metadata_value(value: str) -> str:
    """Values above the provider's limit are replaced by a stable digest, never cut silently."""
    if len(value) <= MAX_METADATA_VALUE_CHARS:
        return value
    return HASHED_PREFIX + hashlib.sha256(value.encode()).hexdigest()


def partition_tag(partition: str | None) -> str:
    """How a partition key is written into batch metadata (``""`` for unpartitioned)."""
    return metadata_value(partition or "")


def batch_metadata(
    key: str,
    asset: str,
    partition: str | None,
    attempt: int,
    shard: int,
    shards: int,
    extra: Mapping[str, str] | None = None,
    *,
    namespace: str | None = None,
    tokens: int | None = None,
    model: str | None = None,
) -> dict[str, str]:
    """The metadata of one batch: ours plus the caller's, checked against provider limits."""
    extra = dict(extra or {})
    check_user_metadata(extra)
    meta = {
        META_KEY: key,
        META_ASSET: metadata_value(asset),
        META_PARTITION: partition_tag(partition),
        META_ATTEMPT: str(attempt),
        META_SHARD: str(shard),
        META_SHARDS: str(shards),
    }
    for name, value in ((META_NAMESPACE, namespace), (META_TOKENS, tokens), (META_MODEL, model)):
        if value is not None and value != "":
            meta[name] = metadata_value(str(value))
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def check_user_metadata(extra: Mapping[str, Any]) -> None:
    """ConfigurationError unless a flow's own metadata fits beside ours within the limits."""
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ConfigurationError(f"batch metadata keys reserved by batch-workflows: {clash}")
    if len(extra) > MAX_USER_METADATA_PAIRS:
        raise ConfigurationError(
            f"at most {MAX_USER_METADATA_PAIRS} extra metadata pairs fit the provider's limit "
            f"of {MAX_METADATA_PAIRS}; got {len(extra)}"
        )
    for k, v in extra.items():
        if not isinstance(k, str) or not k or len(k) > MAX_METADATA_KEY_CHARS:
            raise ConfigurationError(f"metadata key {k!r}: must be 1..{MAX_METADATA_KEY_CHARS} chars")
        if len(str(v)) > MAX_METADATA_VALUE_CHARS:
            raise ConfigurationError(f"metadata value of {k!r}: over {MAX_METADATA_VALUE_CHARS} chars")


def shard_idempotency_key(key: str, attempt: int, shard: int) -> str:
    """The client-level idempotency key of one batch of a submission (the key already carries
    the namespace, so deployments never re-attach to each other's batches)."""
    return f"{key}:a{attempt}:s{shard}"


_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_namespace(namespace: str) -> str:
    """`namespace` if usable in metadata and logs; ConfigurationError saying why otherwise."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r}: expected 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit")
    return namespace


def namespace_for(base_uri: str) -> str:
    """The default namespace of a deployment: a short digest of its artifact store's base URI,
    so two deployments with different stores differ without anyone configuring anything."""
    return "ns-" + hashlib.sha256(base_uri.rstrip("/").encode()).hexdigest()[:12]
