"""The lifecycle's provider protocol (``lifecycle.provider.BatchAPI``) on Anthropic's Message
Batches API, so submit, track, collect, resubmit, cancel and cost run unchanged above it.

* ``upload_file`` uploads nothing: it translates the shard (chat bodies → Messages params,
  custom ids mapped, ``custom_ids``) into the create body, kept in the artifact store
  (``intents.IntentStore``) until the create; Anthropic takes requests inline.
* ``create_batch`` writes the intent (``intents``) durably before sending and binds the id
  after; listing recovers pending intents first, so a crash between the two re-attaches. The
  HTTP plumbing (retries, the look-before-resending of a create) is ``BatchClient``'s.
* ``list_batches`` / ``retrieve_batch`` answer OpenAI-shaped batches (``batch_objects``) with
  the intent's metadata; ``download_file`` turns the results stream into output / error lines.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from batch_workflows.anthropic_batches import batch_objects as objects
from batch_workflows.anthropic_batches.custom_ids import sent_ids
from batch_workflows.anthropic_batches.intents import IntentStore
from batch_workflows.anthropic_batches.wire import TranslationError, chat_to_messages
from batch_workflows.client import (
    AMBIGUOUS_ERRORS,
    IDEMPOTENCY_METADATA_KEY,
    BatchClient,
    is_reattachable,
)
from batch_workflows.errors import ConfigurationError, InvalidRequestError, ProviderError
from batch_workflows.lifecycle.storage import Storage
from batch_workflows.profiles import CHAT

logger = logging.getLogger("batch_workflows.anthropic")

ANTHROPIC_VERSION = "2023-06-01"
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1000 * 1000
# A pending intent's batch, if any, was created within this many seconds of the intent.
RECOVERY_SLACK = 300.0
RECOVERY_WINDOW = 3600.0
INPUT_PREFIX = "bw-anthropic-input-"


class AnthropicBatchClient(BatchClient):
    """``BatchClient``'s HTTP plumbing (retries, redaction) speaking Message Batches.

    `store` is where the create intents and translated inputs live: the deployment's artifact
    store (``lifecycle.storage.Storage``, a local folder or S3), shared by every process that
    submits, tracks or collects for it; `namespace` (the deployment's) scopes them inside it.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, store: Storage,
                 namespace: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, api_key, **kwargs)
        self._http.headers.pop("Authorization", None)
        self._http.headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            self._http.headers["x-api-key"] = api_key
        self.intents = IntentStore(store, namespace)

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"AnthropicBatchClient(base_url={self.base_url!r}, api_key={key})"

    # -- inputs ------------------------------------------------------------------------------
    def upload_file(self, path: str | os.PathLike[str], purpose: str = "batch") -> dict:
        """Translate a shard into the create body (nothing is sent); its id names the body."""
        requests, originals = [], []
        with open(path, "rb") as lines:
            for no, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                line = orjson.loads(raw)
                if line.get("url") != CHAT:
                    raise InvalidRequestError(
                        f"{os.fspath(path)}:{no}: url {line.get('url')!r}: provider 'anthropic' "
                        "serves chat completions only (Anthropic has no embeddings endpoint)")
                try:
                    params = chat_to_messages(line["body"])
                except TranslationError as exc:
                    raise InvalidRequestError(f"{os.fspath(path)}:{no}: body.{exc}") from None
                originals.append(str(line["custom_id"]))
                requests.append(params)
        if len(requests) > MAX_REQUESTS:
            raise ConfigurationError(f"{os.fspath(path)}: {len(requests)} requests; Anthropic "
                                     f"takes at most {MAX_REQUESTS:,} per batch")
        ids, id_map = sent_ids(originals)
        body = orjson.dumps({"requests": [{"custom_id": cid, "params": params}
                                          for cid, params in zip(ids, requests, strict=True)]})
        if len(body) > MAX_BODY_BYTES:
            raise ConfigurationError(f"{os.fspath(path)}: the batch would be {len(body):,} "
                                     f"bytes; Anthropic takes at most {MAX_BODY_BYTES:,}: lower "
                                     "max_bytes_per_file")
        input_id = INPUT_PREFIX + hashlib.sha256(body).hexdigest()[:32]
        self.intents.put_input(input_id, orjson.dumps(
            {"body": orjson.Fragment(body), "id_map": id_map, "requests": len(requests)}))
        return {"id": input_id, "object": "file", "bytes": len(body), "purpose": purpose,
                "filename": Path(path).name}

    def delete_file(self, file_id: str) -> dict:
        """Inputs are ours (the spooled body); result halves are the batch's, kept 29 days."""
        if file_id.startswith(INPUT_PREFIX):
            self.intents.delete_input(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    # -- batches ---------------------------------------------------------------------------
    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        created_after: int | None = None,
        look_first: bool = True,
    ) -> dict:
        if endpoint != CHAT:
            raise ConfigurationError(f"endpoint {endpoint!r}: provider 'anthropic' serves "
                                     f"{CHAT} only (Anthropic has no embeddings endpoint)")
        if extra_body:
            raise ConfigurationError(f"extra_body {sorted(extra_body)}: Anthropic's batch "
                                     "create takes no extra fields")
        if completion_window != "24h":
            raise ConfigurationError("completion_window: Anthropic batches have 24h only")
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        if idempotency_key is not None:
            meta[IDEMPOTENCY_METADATA_KEY] = idempotency_key
            if look_first:
                existing = self._find_reusable(idempotency_key, created_after)
                if existing is not None:
                    return existing
        spool = (self.intents.read_input(input_file_id)
                 if input_file_id.startswith(INPUT_PREFIX) else None)
        if spool is None:
            raise ConfigurationError(f"input {input_file_id!r} was not prepared by upload_file")
        saved = orjson.loads(spool)
        body = orjson.dumps(saved["body"])
        intent = self.intents.record(idempotency_key=idempotency_key, metadata=meta,
                                     id_map=saved["id_map"], input_id=input_file_id,
                                     requests=saved["requests"])

        reached = {"maybe": False}  # whether any try may have reached Anthropic

        def send() -> httpx.Response:
            try:
                response = self._http.post("messages/batches", content=body,
                                           headers={"content-type": "application/json"})
            except AMBIGUOUS_ERRORS:
                reached["maybe"] = True
                raise
            reached["maybe"] = reached["maybe"] or response.status_code >= 500
            return response

        def look() -> dict | None:  # the last try may have reached Anthropic
            self.recover()
            row = self.intents.get(intent)
            return self._json("GET", f"/messages/batches/{row['batch_id']}") \
                if row and row["batch_id"] else None

        try:
            made = self.post_checked("/messages/batches", send, look)
        except ProviderError:
            if not reached["maybe"]:  # every try was refused (4xx, 429) or never left: no batch
                self.intents.abandon(intent)
            raise
        self.intents.bind(intent, made["id"])
        logger.info("created message batch %s (%d requests)", made["id"], saved["requests"])
        return objects.to_openai_batch(made, meta, input_file_id)

    def retrieve_batch(self, batch_id: str) -> dict:
        return self._openai(self._json("GET", f"/messages/batches/{batch_id}"))

    def cancel_batch(self, batch_id: str) -> dict:
        return self._openai(self._json("POST", f"/messages/batches/{batch_id}/cancel"))

    def list_batches(self, limit: int = 100, after: str | None = None) -> Iterator[dict]:
        """Every batch of the workspace, newest first, with our metadata where we made it."""
        self.recover()
        for batch in self._list_raw(limit, after):
            yield self._openai(batch)

    def _list_raw(self, limit: int = 100, after: str | None = None) -> Iterator[dict]:
        return self.paginate("/messages/batches", {"limit": min(limit, 1000)}, "after_id",
                             after)

    def _openai(self, batch: Mapping[str, Any]) -> dict:
        row = self.intents.for_batch(str(batch["id"]))
        return objects.to_openai_batch(batch, row["metadata"] if row else None,
                                       row["input_id"] if row else None)

    def _find_reusable(self, key: str, created_after: int | None = None) -> dict | None:
        for batch in self.list_batches():
            if (batch.get("metadata") or {}).get(IDEMPOTENCY_METADATA_KEY) == key \
                    and is_reattachable(batch):
                return batch
        return None

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> None:
        """Bind each pending intent to the batch its create made, found in the recent list:
        created within the intent's window, with its number of requests, not bound to another
        intent of this namespace.
        An intent with no such batch, old enough that its create cannot still be under way,
        is abandoned (the create never arrived). Two candidates: refuse to guess."""
        pending = self.intents.pending()
        if not pending:
            return
        oldest = min(p["sent_at"] for p in pending) - RECOVERY_SLACK
        recent = []
        for batch in self._list_raw():
            created = objects.epoch(batch.get("created_at")) or 0
            if created < oldest:
                break
            recent.append((created, batch))
        bound: dict[str, bool] = {}  # batch id -> bound to an intent (asked once each)

        def free(batch_id: str) -> bool:
            if batch_id not in bound:
                bound[batch_id] = self.intents.is_bound(batch_id)
            return not bound[batch_id]

        for intent in pending:  # oldest first, as they were sent
            lo, hi = intent["sent_at"] - RECOVERY_SLACK, intent["sent_at"] + RECOVERY_WINDOW
            total = intent["requests"]
            found = [b for created, b in recent if lo <= created <= hi
                     and sum(int(v or 0) for v in (b.get("request_counts") or {}).values())
                     == total and free(b["id"])]
            if len(found) == 1:
                logger.warning("re-attached message batch %s to a create whose id was never "
                               "recorded (intent %s)", found[0]["id"], intent["id"])
                self.intents.bind(intent["id"], found[0]["id"])
                bound[found[0]["id"]] = True
            elif len(found) > 1:
                ids = ", ".join(sorted(b["id"] for b in found))
                raise ProviderError(
                    f"a create of {total} requests (intent {intent['id']} in "
                    f"{self.intents.describe()}) has no recorded batch id and several batches "
                    f"could be it: {ids}. Cancel the ones that are not yours at Anthropic, or "
                    "bind it by hand; nothing is submitted until then, so nothing is paid twice")
            elif time.time() > hi:
                self.intents.abandon(intent["id"])

    # -- results ---------------------------------------------------------------------------
    def download_file(self, file_id: str, dest_path: str | os.PathLike[str]) -> int:
        """One half of a batch's results (``<id>:output`` or ``<id>:errors``) as OpenAI lines."""
        parts = objects.split_file_id(file_id)
        if parts is None:
            raise ConfigurationError(f"{file_id!r} is not a result file of a message batch")
        batch_id, kind = parts
        raw = self._json("GET", f"/messages/batches/{batch_id}")
        url = raw.get("results_url")
        if not url:
            raise ProviderError(f"message batch {batch_id} has no results yet "
                                f"({raw.get('processing_status')})")
        back = self.intents.id_map(batch_id)
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")

        def attempt() -> int:
            size = 0
            with self._http.stream("GET", url) as response, open(part, "wb") as out:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(response, "GET", f"/messages/batches/{batch_id}"
                                                            "/results")
                for raw_line in response.iter_lines():
                    if not raw_line.strip():
                        continue
                    line = orjson.loads(raw_line)
                    sent = str(line.get("custom_id"))
                    half, converted = objects.to_openai_line(line, back.get(sent, sent))
                    if half == kind:
                        data = orjson.dumps(converted) + b"\n"
                        out.write(data)
                        size += len(data)
            os.replace(part, dest)
            return size

        return self._retrying("GET", f"/messages/batches/{batch_id}/results", attempt)
