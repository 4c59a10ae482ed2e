"""The artifact layout: where each file of a partition's lifecycle lives, in one place.

Under the store (``<p>`` = the quoted partition key, ``_all`` unpartitioned)::

    <name>/<p>/requests.json              the request pointer (current shards + submission key)
    <name>/<p>/submission.json            the current submission manifest (attempt 1)
    <name>/<p>/results.parquet            final results (one row per custom_id)
    <name>/<p>/summary.json               the figures behind the metadata and checks
    <name>/<p>/<file>                     a flow's own files (side tables, outputs)
    <name>/<p>/<key16>/requests/…         shards
    <name>/<p>/<key16>/attempt-<n>/…      creating.json, submission.json, join.json,
                                          failures.json, raw/…, results.parquet
    <name>/_partition_keys/<hex>          the full key behind a hashed partition tag
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from batch_workflows.lifecycle.keys import HASHED_PREFIX

UNPARTITIONED = "_all"
# A quoted partition key longer than this (a file name limit) becomes a prefix plus a digest.
MAX_SEGMENT = 255


def partition_dir(name: str, partition_key: str | None) -> str:
    """``<name>/<quoted partition>``: the artifact folder of one partition."""
    if not partition_key:
        return f"{name}/{UNPARTITIONED}"
    segment = quote(partition_key, safe="-_=+,@")
    if segment in (".", ".."):  # not a valid path segment
        segment = segment.replace(".", "%2E")
    if len(segment) > MAX_SEGMENT:  # file systems cap a name at 255 bytes
        digest = hashlib.sha256(partition_key.encode()).hexdigest()[:32]
        segment = f"{segment[:MAX_SEGMENT - 34]}~{digest}"
    return f"{name}/{segment}"


def partition_index_key(name: str, tag: str) -> str | None:
    """Where the full key of a hashed partition tag (``sha256:<hex>``) is recorded."""
    if not tag.startswith(HASHED_PREFIX):
        return None
    return f"{name}/_partition_keys/{tag.removeprefix(HASHED_PREFIX)}"


def raw_name(shard: int, kind: str) -> str:
    """A shard's ``output`` or ``error`` file under an attempt's ``raw/`` folder (named by the
    shard's position, never by a string the provider chose)."""
    return f"shard-{shard:05d}-{kind}.jsonl"


@dataclass(frozen=True)
class PartitionLayout:
    """The artifact keys of one partition of one lifecycle (`name` is the flow's name)."""

    name: str
    partition: str | None

    @property
    def folder(self) -> str:
        return partition_dir(self.name, self.partition)

    def file(self, filename: str) -> str:
        """A flow's own file in the partition's folder (a side table, an output)."""
        return f"{self.folder}/{filename}"

    @property
    def pointer(self) -> str:
        return self.file("requests.json")

    @property
    def submission(self) -> str:
        return self.file("submission.json")

    @property
    def results(self) -> str:
        return self.file("results.parquet")

    @property
    def summary(self) -> str:
        return self.file("summary.json")

    def shard(self, key: str, filename: str) -> str:
        return f"{self.folder}/{key[:16]}/requests/{filename}"

    def attempt(self, key: str, attempt: int) -> AttemptLayout:
        return AttemptLayout(f"{self.folder}/{key[:16]}/attempt-{attempt}")


@dataclass(frozen=True)
class AttemptLayout:
    """The artifact keys of one attempt of a submission."""

    folder: str

    @property
    def submission(self) -> str:
        return f"{self.folder}/submission.json"

    @property
    def results(self) -> str:
        return f"{self.folder}/results.parquet"

    @property
    def join(self) -> str:
        return f"{self.folder}/join.json"

    @property
    def creating(self) -> str:
        """When the attempt's first create was sent (written before it: a crash before the
        manifest leaves this, and the list scan for its batches stops there)."""
        return f"{self.folder}/creating.json"

    @property
    def failures(self) -> str:
        """The batch-level failures of the attempt (``failures.BatchFailure`` records)."""
        return f"{self.folder}/failures.json"

    def raw(self, filename: str) -> str:
        return f"{self.folder}/raw/{filename}"

    def shard(self, filename: str) -> str:
        return f"{self.folder}/requests/{filename}"
