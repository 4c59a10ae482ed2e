"""SQLite (WAL) metadata store: files, batches and per-batch progress.

File bodies live on disk under `data_dir/files/<id>`; ids are random and made here, so no
client string ever becomes a path. Batch progress is a committed prefix: requests before
`next_index` (input bytes before `input_offset`) are done, and their result lines are the
first `out_bytes` / `err_bytes` bytes of the partial output and error files.
"""

from __future__ import annotations

import fcntl
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from batch_workflows.errors import ConfigurationError
from batch_workflows.wire import TERMINAL_STATUSES

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
BATCH_ID = re.compile(r"^batch_[0-9a-f]{24}$")

# Every status but wire.TERMINAL_STATUSES (an IN list, so the status index is used).
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'processed'
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status TEXT NOT NULL,
    final_status TEXT,
    model TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    in_progress_at INTEGER, finalizing_at INTEGER, completed_at INTEGER, failed_at INTEGER,
    expired_at INTEGER, cancelling_at INTEGER, cancelled_at INTEGER,
    output_file_id TEXT, error_file_id TEXT,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    metadata TEXT,
    errors TEXT,
    extra TEXT,
    out_name TEXT NOT NULL,
    err_name TEXT NOT NULL,
    out_bytes INTEGER NOT NULL DEFAULT 0,
    err_bytes INTEGER NOT NULL DEFAULT 0,
    input_offset INTEGER NOT NULL DEFAULT 0,
    next_index INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_status ON batches(status);
"""


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data dir for this process's lifetime (released by the
    kernel even on kill -9); a second server on the same dir would break exactly-once."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    handle = open(Path(data_dir) / "server.lock", "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigurationError(f"another server is already using {data_dir}") from None
    return handle


class Store:
    """Thread-safe access to the metadata database (one connection per thread)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.partial_dir = self.data_dir / "partial"
        self.tmp_dir = self.data_dir / "tmp"
        for folder in (self.files_dir, self.partial_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._path = self.data_dir / "state.sqlite3"
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # executescript manages its own transaction

    # -- plumbing -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed chunk survives power loss
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple = ()) -> dict[str, Any] | None:
        row = self._conn().execute(sql, params).fetchone()
        return dict(row) if row else None

    def file_path(self, file_id: str) -> Path:
        if not FILE_ID.match(file_id):  # ids are ours; refuse anything else before touching disk
            raise ValueError("not a file id")
        return self.files_dir / file_id

    def partial_path(self, name: str) -> Path:
        if not FILE_ID.match(name):
            raise ValueError("not a file id")
        return self.partial_dir / f"{name}.jsonl"

    # -- files ----------------------------------------------------------------------------
    def add_file(self, file_id: str, size: int, filename: str, purpose: str) -> dict[str, Any]:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO files (id, bytes, created_at, filename, purpose) VALUES (?,?,?,?,?)",
                (file_id, size, now(), filename, purpose),
            )
        return self.get_file(file_id)  # type: ignore[return-value]

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        if not FILE_ID.match(file_id):
            return None
        return self._one("SELECT * FROM files WHERE id=?", (file_id,))

    def list_files(
        self, limit: int, after: str | None, purpose: str | None, order: str = "desc"
    ) -> list[dict[str, Any]]:
        """Up to `limit` files after the cursor; newest first unless order='asc'."""
        op, direction = ("<", "DESC") if order == "desc" else (">", "ASC")
        sql, params = "SELECT * FROM files WHERE 1=1", []
        if purpose:
            sql += " AND purpose=?"
            params.append(purpose)
        if after:
            sql += f" AND seq {op} COALESCE((SELECT seq FROM files WHERE id=?), ?)"
            params += [after, -1 if order == "desc" else 1 << 62]
        sql += f" ORDER BY seq {direction} LIMIT ?"
        params.append(limit)
        return [dict(r) for r in self._conn().execute(sql, params)]

    def delete_file(self, file_id: str) -> bool:
        with self.transaction() as db:
            cur = db.execute("DELETE FROM files WHERE id=?", (file_id,))
        return cur.rowcount > 0

    def file_in_use(self, file_id: str) -> bool:
        marks = ",".join("?" * len(ACTIVE))
        row = self._one(
            f"SELECT 1 AS x FROM batches WHERE input_file_id=? AND status IN ({marks})",
            (file_id, *ACTIVE),
        )
        return row is not None

    def sweep_orphans(self) -> tuple[list[str], list[str]]:
        """At start, before any worker: drop what a crash between a disk step and its database
        step left behind. Returns (bodies removed, file rows removed).

        * a body under files/ (or a partial file) that no row and no active batch claims:
          an upload that moved its body in but never wrote the row, or a delete that removed
          the row but not yet the body;
        * a file row whose body is gone from disk: answered as "no such file" from now on
          rather than failing on every read. An active batch's output files are kept: a
          finalizing batch moves them in before registering them, and redoes that after a
          crash.
        """
        claimed = set()
        for row in self.active_batches():
            claimed.update((row["out_name"], row["err_name"]))
        bodies = []
        for path in self.files_dir.iterdir():
            name = path.name
            if FILE_ID.match(name) and name not in claimed and self.get_file(name) is None:
                path.unlink(missing_ok=True)
                bodies.append(name)
        for path in self.partial_dir.iterdir():
            name = path.name.removesuffix(".jsonl")
            if FILE_ID.match(name) and name not in claimed:
                path.unlink(missing_ok=True)
                bodies.append(name)
        missing = [
            row["id"] for row in self._conn().execute("SELECT id FROM files")
            if not (self.files_dir / row["id"]).exists()
        ]
        for file_id in missing:
            self.delete_file(file_id)
        return bodies, missing

    # -- batches --------------------------------------------------------------------------
    def add_batch(
        self,
        endpoint: str,
        input_file_id: str,
        completion_window: str,
        window_seconds: int,
        metadata: dict[str, str] | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        batch_id, created = new_batch_id(), now()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO batches (id, endpoint, input_file_id, completion_window, status,"
                " created_at, expires_at, metadata, extra, out_name, err_name)"
                " VALUES (?,?,?,?,'validating',?,?,?,?,?,?)",
                (
                    batch_id,
                    endpoint,
                    input_file_id,
                    completion_window,
                    created,
                    created + window_seconds,
                    orjson.dumps(metadata).decode() if metadata is not None else None,
                    orjson.dumps(extra).decode() if extra else None,
                    new_file_id(),
                    new_file_id(),
                ),
            )
        return self.get_batch(batch_id)  # type: ignore[return-value]

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        if not BATCH_ID.match(batch_id):
            return None
        return self._one("SELECT * FROM batches WHERE id=?", (batch_id,))

    def list_batches(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM batches", []
        if after:
            sql += " WHERE seq < COALESCE((SELECT seq FROM batches WHERE id=?), -1)"
            params.append(after)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [dict(r) for r in self._conn().execute(sql, params)]

    def list_batches_of(self, api: str, limit: int, after: str | None = None,
                        before: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` batches created through `api` (``extra.api``), newest first: older
        than the `after` cursor, or the nearest ones newer than the `before` cursor."""
        sql = "SELECT * FROM batches WHERE json_extract(extra, '$.api') IS ?"
        params: list[Any] = [api]
        if after:
            sql += " AND seq < COALESCE((SELECT seq FROM batches WHERE id=?), -1)"
            params.append(after)
        if before:
            sql += " AND seq > COALESCE((SELECT seq FROM batches WHERE id=?), 1 << 62)"
            params.append(before)
        # Before a cursor: the nearest newer ones, then shown newest first like every page.
        sql += f" ORDER BY seq {'ASC' if before and not after else 'DESC'} LIMIT ?"
        params.append(limit)
        rows = [dict(r) for r in self._conn().execute(sql, params)]
        return sorted(rows, key=lambda r: -r["seq"])

    def active_batches(self) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(ACTIVE))
        sql = f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY seq"
        return [dict(r) for r in self._conn().execute(sql, ACTIVE)]

    def update_batch(self, batch_id: str, only_if: tuple[str, ...] = (), **fields: Any) -> bool:
        """Set fields; with `only_if`, only when the status is one of those. True if changed."""
        sets = ", ".join(f"{k}=?" for k in fields)
        sql, params = f"UPDATE batches SET {sets} WHERE id=?", [*fields.values(), batch_id]
        if only_if:
            sql += f" AND status IN ({','.join('?' * len(only_if))})"
            params += list(only_if)
        with self.transaction() as db:
            return db.execute(sql, params).rowcount > 0

    def commit_chunk(
        self,
        batch_id: str,
        out_bytes: int,
        err_bytes: int,
        input_offset: int,
        next_index: int,
        completed: int,
        failed: int,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """Record one chunk's results as done: offsets and counters in one transaction."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET out_bytes=?, err_bytes=?, input_offset=?, next_index=?,"
                " completed=completed+?, failed=failed+?, input_tokens=input_tokens+?,"
                " output_tokens=output_tokens+? WHERE id=?",
                (
                    out_bytes,
                    err_bytes,
                    input_offset,
                    next_index,
                    completed,
                    failed,
                    input_tokens,
                    output_tokens,
                    batch_id,
                ),
            )

    def finish_batch(
        self, batch_id: str, status: str, outputs: list[tuple[str, int, str]], **fields: Any
    ) -> None:
        """Register the output/error files (id, bytes, filename) and set the final status."""
        if status not in TERMINAL_STATUSES:  # also keeps `status` out of the SQL unless known
            raise ValueError(f"not a terminal status: {status!r}")
        with self.transaction() as db:
            for file_id, size, filename in outputs:
                db.execute(
                    "INSERT OR IGNORE INTO files (id, bytes, created_at, filename, purpose)"
                    " VALUES (?,?,?,?,'batch_output')",
                    (file_id, size, now(), filename),
                )
            sets = ", ".join(f"{k}=?" for k in ("status", f"{status}_at", *fields))
            db.execute(
                f"UPDATE batches SET {sets} WHERE id=?",
                (status, now(), *fields.values(), batch_id),
            )
