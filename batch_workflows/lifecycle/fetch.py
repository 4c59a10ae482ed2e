"""Each batch's output and error files, stored as soon as that batch is terminal.

A blocking wait calls ``fetching``'s callback on every poll; in non-blocking mode a results run
that finds some of an attempt's batches terminal and others still running calls
``store_terminal`` before it returns (the tracking sensor asks for such a run as batches end).
Either way a batch that has ended has its files in the attempt's ``raw/`` folder in the store at
once, not when the slowest batch of the attempt ends (nor left to the provider's retention).
``prefetched`` puts them where ``collect.download_outputs`` looks, so they are not downloaded
twice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from batch_workflows.lifecycle.layout import AttemptLayout, raw_name
from batch_workflows.lifecycle.manifests import SubmissionManifest
from batch_workflows.lifecycle.provider import BatchAPI
from batch_workflows.lifecycle.storage import Storage
from batch_workflows.wire import is_terminal

KINDS = ("output", "error")


def store_terminal(client: BatchAPI, store: Storage, alayout: AttemptLayout,
                   sub: SubmissionManifest, batches: Mapping[str, Mapping]) -> int:
    """Store the files of every terminal batch of the attempt not stored yet; the number of
    files stored now."""
    stored = 0
    for n, bid in enumerate(sub.batch_ids):
        batch = batches.get(bid) or {}
        if not is_terminal(batch):
            continue
        for kind in KINDS:
            key = alayout.raw(raw_name(n, kind))
            if batch.get(f"{kind}_file_id") and not store.exists(key):
                with tempfile.TemporaryDirectory(prefix="bw-fetch-") as tmp:
                    path = Path(tmp) / "file.jsonl"
                    client.download_file(batch[f"{kind}_file_id"], path)
                    store.put_file(path, key)
                stored += 1
    return stored


def fetching(client: BatchAPI, store: Storage, alayout: AttemptLayout, sub: SubmissionManifest,
             report: Callable[[dict[str, dict]], None]) -> Callable[[dict[str, dict]], None]:
    """A progress callback that also stores each batch's files as soon as it is terminal, so
    that nothing waits for the slowest batch of the attempt (or the provider's retention)."""
    done: set[str] = set()

    def fetch(batches: dict[str, dict]) -> None:
        report(batches)
        ended = {bid: b for bid, b in batches.items() if bid not in done and is_terminal(b)}
        if ended:
            store_terminal(client, store, alayout, sub, ended)
            done.update(ended)
    return fetch


def prefetched(store: Storage, alayout: AttemptLayout, sub: SubmissionManifest,
               raw: Path) -> None:
    """Files stored already, put where ``collect`` looks before downloading."""
    for n in range(len(sub.batches)):
        for kind in KINDS:
            key = alayout.raw(raw_name(n, kind))
            if store.exists(key):
                store.get_file(key, raw / raw_name(n, kind))
