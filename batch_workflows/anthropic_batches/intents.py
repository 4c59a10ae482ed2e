"""The durable record that replaces batch metadata on Anthropic, kept in the artifact store.

Anthropic batches carry no metadata, so what the lifecycle keeps there (submission key, attempt,
shard, namespace) lives here instead, keyed by the batch id. The record is written *before* the
create is sent and bound to the id once it comes back: a crash in between leaves a pending
intent, which recovery (``client.AnthropicBatchClient``) matches to the batch the provider made
by listing the workspace's recent batches, so a re-run re-attaches instead of paying twice.

Everything lives in a ``Storage`` (the deployment's artifact store: a local folder or S3), never
on a worker's disk, under one prefix per namespace::

    _anthropic/<namespace>/intents/<intent>.json    every intent, as last written
    _anthropic/<namespace>/pending/<intent>.json    intents with no batch id yet (a marker,
                                                    removed on bind or abandon)
    _anthropic/<namespace>/batches/<batch>.json     the bound intent, by batch id
    _anthropic/<namespace>/inputs/<input id>        translated create bodies awaiting the create

Each file is written whole by one writer (the create that owns the intent; recovery binds only
intents whose create died), so no key is updated by two processes at once; a bind writes the
batch index first, so a crash part way leaves a pending marker that recovery clears.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from batch_workflows.lifecycle.storage import Storage

ROOT = "_anthropic"
# The prefix of a client without a namespace (a script): namespaces start with a letter or digit.
UNSCOPED = "_unscoped"


# Bound intents already read, by (store prefix, batch id): the oldest go first past the cap.
_BOUND: dict[tuple[str, str], dict[str, Any]] = {}
_BOUND_MAX = 100_000


class IntentStore:
    """Intents and the translated inputs waiting to be created, under one prefix of `storage`."""

    def __init__(self, storage: Storage, namespace: str | None = None) -> None:
        self.storage = storage
        self.namespace = namespace or UNSCOPED
        self.prefix = f"{ROOT}/{self.namespace}/"
        self.scope = self.storage.uri(f"{ROOT}/{self.namespace}")  # which store and namespace

    def describe(self) -> str:
        """Where the intents live (for messages)."""
        return self.storage.uri(self.prefix + "intents")

    # -- translated inputs ------------------------------------------------------------------
    def input_key(self, input_id: str) -> str:
        return f"{self.prefix}inputs/{input_id}"

    def put_input(self, input_id: str, data: bytes) -> None:
        self.storage.write_bytes(self.input_key(input_id), data)

    def read_input(self, input_id: str) -> bytes | None:
        try:
            return self.storage.read_bytes(self.input_key(input_id))
        except FileNotFoundError:
            return None

    def delete_input(self, input_id: str) -> None:
        self.storage.delete(self.input_key(input_id))

    # -- intents ----------------------------------------------------------------------------
    def record(self, *, idempotency_key: str | None, metadata: dict[str, str],
               id_map: dict[str, str], input_id: str, requests: int) -> str:
        """Write the intent to create a batch (before sending it); returns the intent's id."""
        intent = {"id": uuid.uuid4().hex, "batch_id": None, "idempotency_key": idempotency_key,
                  "metadata": metadata, "id_map": id_map, "input_id": input_id,
                  "requests": requests, "sent_at": time.time(), "abandoned": False}
        self._write("intents", intent["id"], intent)
        self._write("pending", intent["id"], intent)
        return intent["id"]

    def bind(self, intent_id: str, batch_id: str) -> None:
        """The provider's id for the intent's batch (unconditional: a late bind wins)."""
        intent = self.get(intent_id)
        if intent is None:
            raise KeyError(f"no intent {intent_id} in {self.describe()}")
        intent.update(batch_id=batch_id, abandoned=False)
        self._write("batches", batch_id, intent)  # the index first: a crash leaves a marker
        _BOUND.pop((self.scope, batch_id), None)
        self._write("intents", intent_id, intent)
        self.storage.delete(self._key("pending", intent_id))

    def abandon(self, intent_id: str) -> None:
        """No batch came of it: the create never reached the provider."""
        intent = self.get(intent_id)
        if intent is not None and not intent["batch_id"]:
            intent["abandoned"] = True
            self._write("intents", intent_id, intent)
        self.storage.delete(self._key("pending", intent_id))

    def pending(self) -> list[dict[str, Any]]:
        """Intents with no batch id yet, oldest first (markers of bound intents are cleared)."""
        found = []
        for key in self.storage.list(self.prefix + "pending/"):
            intent_id = key.rsplit("/", 1)[-1].removesuffix(".json")
            intent = self.get(intent_id)
            if intent is None or intent["batch_id"] or intent["abandoned"]:
                self.storage.delete(key)  # a bind or abandon that stopped part way
                continue
            found.append(intent)
        return sorted(found, key=lambda i: i["sent_at"])

    def get(self, intent_id: str) -> dict[str, Any] | None:
        return self._read("intents", intent_id)

    def for_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The intent bound to `batch_id` (remembered by the process once found: a tracking
        sensor lists the same batches every tick, and a bound intent does not change)."""
        key = (self.scope, batch_id)
        if key not in _BOUND:
            intent = self._read("batches", batch_id)
            if intent is None:
                return None
            if len(_BOUND) >= _BOUND_MAX:
                _BOUND.pop(next(iter(_BOUND)))
            _BOUND[key] = intent
        return _BOUND[key]

    def is_bound(self, batch_id: str) -> bool:
        return self.for_batch(batch_id) is not None

    def metadata(self, batch_id: str) -> dict[str, str] | None:
        intent = self.for_batch(batch_id)
        return intent["metadata"] if intent else None

    def id_map(self, batch_id: str) -> dict[str, str]:
        intent = self.for_batch(batch_id)
        return intent["id_map"] if intent else {}

    # -- files ------------------------------------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}/{name}.json"

    def _write(self, kind: str, name: str, intent: dict[str, Any]) -> None:
        self.storage.write_bytes(self._key(kind, name), orjson.dumps(intent))

    def _read(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return orjson.loads(self.storage.read_bytes(self._key(kind, name)))
        except FileNotFoundError:
            return None
