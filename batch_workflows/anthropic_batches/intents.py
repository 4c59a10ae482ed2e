"""The durable record that replaces batch metadata on Anthropic.

Anthropic batches carry no metadata, so what the lifecycle keeps there (submission key, attempt,
shard, namespace) lives here instead, keyed by the batch id. The record is written *before* the
create is sent and bound to the id once it comes back: a crash in between leaves a pending
intent, which recovery (``client.AnthropicBatchClient``) matches to the batch the provider made
by listing the workspace's recent batches, so a re-run re-attaches instead of paying twice.

One SQLite file (WAL, synchronous=FULL: a recorded intent survives power loss) under the
resource's ``state_dir``; it must be shared by every process that submits for a deployment.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id TEXT PRIMARY KEY,
    batch_id TEXT UNIQUE,
    idempotency_key TEXT,
    metadata TEXT NOT NULL,
    id_map TEXT NOT NULL,
    input_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    abandoned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS intents_pending ON intents(batch_id) WHERE batch_id IS NULL;
"""


class IntentStore:
    """Intents and the translated inputs waiting to be created, under one folder."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.inputs = self.directory / "inputs"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self._path = self.directory / "intents.sqlite3"
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def record(self, *, idempotency_key: str | None, metadata: dict[str, str],
               id_map: dict[str, str], input_id: str, requests: int) -> str:
        """Write the intent to create a batch (before sending it); returns the intent's id."""
        intent_id = uuid.uuid4().hex
        self._db().execute(
            "INSERT INTO intents (id, idempotency_key, metadata, id_map, input_id, requests,"
            " sent_at) VALUES (?,?,?,?,?,?,?)",
            (intent_id, idempotency_key, orjson.dumps(metadata).decode(),
             orjson.dumps(id_map).decode(), input_id, requests, time.time()))
        return intent_id

    def bind(self, intent_id: str, batch_id: str) -> None:
        """The provider's id for the intent's batch (unconditional: a late bind wins)."""
        self._db().execute("UPDATE intents SET batch_id=?, abandoned=0 WHERE id=?",
                           (batch_id, intent_id))

    def abandon(self, intent_id: str) -> None:
        """No batch came of it: the create never reached the provider."""
        self._db().execute("UPDATE intents SET abandoned=1 WHERE id=? AND batch_id IS NULL",
                           (intent_id,))

    def pending(self) -> list[dict[str, Any]]:
        """Intents with no batch id yet, oldest first."""
        rows = self._db().execute(
            "SELECT * FROM intents WHERE batch_id IS NULL AND abandoned=0 ORDER BY sent_at")
        return [dict(r) for r in rows]

    def get(self, intent_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT * FROM intents WHERE id=?", (intent_id,)).fetchone()
        return dict(row) if row else None

    def for_batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT * FROM intents WHERE batch_id=?",
                                 (batch_id,)).fetchone()
        return dict(row) if row else None

    def bound(self) -> set[str]:
        return {r[0] for r in self._db().execute(
            "SELECT batch_id FROM intents WHERE batch_id IS NOT NULL")}

    def metadata(self, batch_id: str) -> dict[str, str] | None:
        row = self.for_batch(batch_id)
        return orjson.loads(row["metadata"]) if row else None

    def id_map(self, batch_id: str) -> dict[str, str]:
        row = self.for_batch(batch_id)
        return orjson.loads(row["id_map"]) if row else {}
