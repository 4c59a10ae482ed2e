"""Each batch's output and error files, stored as soon as that batch is terminal.

A blocking wait calls ``fetching``'s callback on every poll: a batch that has just ended has its
files downloaded into the attempt's ``raw/`` folder in the store at once, not when the slowest
batch of the attempt ends (nor left to the provider's retention). ``prefetched`` puts them
where ``collect.download_outputs`` looks, so they are not downloaded twice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from batch_workflows.lifecycle.layout import AttemptLayout
from batch_workflows.lifecycle.manifests import SubmissionManifest
from batch_workflows.lifecycle.provider import BatchAPI
from batch_workflows.lifecycle.storage import Storage
from batch_workflows.wire import is_terminal


def fetching(client: BatchAPI, store: Storage, alayout: AttemptLayout, sub: SubmissionManifest,
              report: Callable[[dict[str, dict]], None]) -> Callable[[dict[str, dict]], None]:
    """A progress callback that also stores each batch's files as soon as it is terminal, so
    that nothing waits for the slowest batch of the attempt (or the provider's retention)."""
    done: set[str] = set()

    def fetch(batches: dict[str, dict]) -> None:
        report(batches)
        for n, bid in enumerate(sub.batch_ids):
            batch = batches.get(bid) or {}
            if bid in done or not is_terminal(batch):
                continue
            done.add(bid)
            for kind in ("output", "error"):
                key = alayout.raw(f"shard-{n:05d}-{kind}.jsonl")
                if batch.get(f"{kind}_file_id") and not store.exists(key):
                    with tempfile.TemporaryDirectory(prefix="bw-fetch-") as tmp:
                        path = Path(tmp) / "file.jsonl"
                        client.download_file(batch[f"{kind}_file_id"], path)
                        store.put_file(path, key)
    return fetch


def prefetched(store: Storage, alayout: AttemptLayout, sub: SubmissionManifest,
                raw: Path) -> None:
    """Files ``fetching`` stored already, put where ``collect`` looks before downloading."""
    for n in range(len(sub.batches)):
        for kind in ("output", "error"):
            key = alayout.raw(f"shard-{n:05d}-{kind}.jsonl")
            if store.exists(key):
                store.get_file(key, raw / f"shard-{n:05d}-{kind}.jsonl")
