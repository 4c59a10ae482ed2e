"""Which batches at the provider belong to this deployment.

Staging and production often share one provider account. Every batch carries its deployment's
namespace in its metadata (``bw_ns``) and in its submission key, and everything that acts on
the provider's list (re-attach, cancel superseded batches, the tracking scan, the cancel
command) acts only on batches that ``Owner.owns``:

* a batch with a namespace is ours when the namespace is ours;
* a batch without one (made by a script without a namespace, or before namespaces existed)
  is ours when our artifact store recorded its submission (the attempt's manifest under
  ``layout.PartitionLayout``): the store is per deployment, so another deployment's legacy
  batches are never adopted. A script without a namespace owns every un-namespaced batch
  (the behaviour before namespaces) and never a namespaced one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batch_workflows.errors import ConfigurationError
from batch_workflows.lifecycle.keys import (
    META_ASSET,
    META_ATTEMPT,
    META_KEY,
    META_NAMESPACE,
    META_PARTITION,
    check_namespace,
    namespace_for,
)
from batch_workflows.lifecycle.layout import PartitionLayout, partition_index_key
from batch_workflows.lifecycle.storage import Storage
from batch_workflows.s3 import is_s3, split_s3_prefix

_PROBE = "_"


def store_base_uri(store: Any) -> str:
    """Where a store lives, as a URI (absolute folder, or ``s3://bucket/prefix/``)."""
    uri = getattr(store, "uri", None)
    if uri is None:
        raise ConfigurationError(
            f"{type(store).__name__} has no uri(): set a namespace explicitly")
    return str(uri(_PROBE)).removesuffix(_PROBE)


def base_uri(text: str) -> str:
    """`text` (a folder, ``file://`` or ``s3://`` URI) normalised as ``store_base_uri`` gives
    it, so the cancel command derives the same namespace as the deployment."""
    if is_s3(text):
        bucket, prefix = split_s3_prefix(text)
        return f"s3://{bucket}/{prefix}"
    return str(Path(text.removeprefix("file://")).expanduser().resolve()) + "/"


def default_namespace(store: Any) -> str:
    """The namespace of a deployment whose artifacts live in `store` (a digest of its URI)."""
    return namespace_for(store_base_uri(store))


def resolve_namespace(namespace: str | None, store: Any) -> str:
    """`namespace` checked, else the store's default."""
    return check_namespace(namespace) if namespace else default_namespace(store)


class Owner:
    """Decides whether a provider batch is this deployment's (see the module docstring).

    `namespace` None: a script without one; it owns only batches without a namespace.
    """

    def __init__(self, namespace: str | None, store: Storage | None = None) -> None:
        self.namespace = check_namespace(namespace) if namespace else None
        self.store = store
        self._legacy: dict[tuple[str, str, str, str], bool] = {}

    def owns(self, batch: Mapping[str, Any]) -> bool:
        meta = batch.get("metadata") or {}
        ns = meta.get(META_NAMESPACE)
        if ns:
            return ns == self.namespace
        if self.namespace is None:
            return True  # a script without a namespace: un-namespaced batches, as before
        return self.store is not None and self._recorded(meta)

    def _recorded(self, meta: Mapping[str, Any]) -> bool:
        """Whether our store holds the manifest of this un-namespaced batch's attempt."""
        asset, tag = str(meta.get(META_ASSET, "")), str(meta.get(META_PARTITION, ""))
        key, attempt = str(meta.get(META_KEY, "")), str(meta.get(META_ATTEMPT, "1"))
        ident = (asset, tag, key, attempt)
        if ident not in self._legacy:
            self._legacy[ident] = self._lookup(asset, tag, key, attempt)
        return self._legacy[ident]

    def _lookup(self, asset: str, tag: str, key: str, attempt: str) -> bool:
        store = self.store
        if store is None or not asset or not key or not attempt.isdigit():
            return False
        try:
            index = partition_index_key(asset, tag)
            partition: str | None = tag or None
            if index is not None:  # a hashed tag: the full key is where remember_partition put it
                if not store.exists(index):
                    return False
                partition = store.read_bytes(index).decode()
            manifest = PartitionLayout(asset, partition).attempt(key, int(attempt)).submission
            return store.exists(manifest)
        except ValueError:  # a tag that is no valid artifact key: not one of ours
            return False

    def describe(self) -> str:
        return f"namespace {self.namespace!r}" if self.namespace else "no namespace"
