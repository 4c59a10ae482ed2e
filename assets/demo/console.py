"""What the demo prints: plain lines, and a run's progress read from the Dagster event log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def say(text: str = "") -> None:
    print(text, flush=True)


class RunWatcher(threading.Thread):
    """Prints a run's progress from the Dagster event log while it executes."""

    INTERESTING = ("STEP_START", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_FAILURE")
    HEARTBEAT = 15.0  # seconds of silence before asking the engine how the batch is doing

    def __init__(self, tag: str, started: float,
                 batch_status: Callable[[str], dict] | None = None) -> None:
        super().__init__(daemon=True)
        self.tag = tag
        self.started = started
        self.batch_status = batch_status  # batch id -> batch object (a BatchClient method)
        self.stop = threading.Event()
        self.seen = 0
        self.run_id: str | None = None
        self.step_seconds: dict[str, float] = {}
        self.batch_ids: list[str] = []
        self.last_output = time.time()

    def run(self) -> None:
        from dagster import DagsterInstance, RunsFilter

        instance = DagsterInstance.get()
        while True:
            finished = self.stop.is_set()
            if self.run_id is None:
                runs = instance.get_runs(RunsFilter(tags={"batch_workflows/demo": self.tag}), limit=1)
                self.run_id = runs[0].run_id if runs else None
            if self.run_id is not None:
                records = instance.all_logs(self.run_id)
                for entry in records[self.seen:]:
                    self._show(entry)
                    self.last_output = time.time()
                self.seen = len(records)
            if finished:
                return
            if self.batch_ids and time.time() - self.last_output > self.HEARTBEAT:
                self._heartbeat()
            self.stop.wait(0.5)

    def _stamp(self, at: float | None = None) -> str:
        return f"[{(at or time.time()) - self.started:6.1f}s]"

    def _heartbeat(self) -> None:
        self.last_output = time.time()
        if self.batch_status is None:
            return
        from batch_workflows.errors import BatchError

        for bid in self.batch_ids:
            try:
                b = self.batch_status(bid)
            except BatchError as exc:  # progress output must not end the demo
                say(f"{self._stamp()}     (could not poll {bid}: {exc})")
                continue
            c = b.get("request_counts") or {}
            say(f"{self._stamp()}     waiting for the engine: {bid} {b.get('status')}, "
                f"{c.get('completed', 0)}/{c.get('total', '?')} requests done")

    def _show(self, entry: Any) -> None:
        t = self._stamp(entry.timestamp)
        event = entry.dagster_event
        if event is None:
            if entry.level >= 20 and entry.user_message:  # the assets' own INFO lines
                say(f"{t}     {entry.user_message}")
            return
        kind = event.event_type_value
        if kind == "STEP_SUCCESS":
            self.step_seconds[event.step_key] = event.event_specific_data.duration_ms / 1000
        if kind not in self.INTERESTING:
            return
        data = event.event_specific_data
        if kind == "STEP_START":
            say(f"{t}   ▸ {event.step_key}")
        elif kind == "ASSET_MATERIALIZATION":
            md = {k: v.value for k, v in data.materialization.metadata.items()}
            if isinstance(md.get("batch_ids"), list):
                self.batch_ids = list(md["batch_ids"])
            say(f"{t}     ✓ {data.materialization.asset_key.to_user_string()}: {_short(md)}")
        elif kind == "ASSET_CHECK_EVALUATION":
            say(f"{t}     check {data.check_name}: {'passed' if data.passed else 'FAILED'}")
        elif kind == "STEP_FAILURE":
            say(f"{t}     ✗ {event.step_key} failed: {data.error.message.strip()[:500]}")


def _short(md: dict[str, Any]) -> str:
    keys = ("requests", "shards", "batches_created", "reattached", "succeeded", "failed",
            "prompt_tokens", "chunks", "points", "upserted", "unchanged", "stale_deleted")
    return ", ".join(f"{k}={md[k]}" for k in keys if k in md) or "done"
