"""The lifecycle's records, typed: what is stored as JSON beside the shards and results.

* ``RequestPointer`` (``requests.json``) — the shards of a partition and their submission key;
* ``SubmissionManifest`` (``submission.json``) — what one attempt created at the provider;
* ``JoinFigures`` (``join.json``) — what the join of one attempt found outside its rows;
* ``Summary`` (``summary.json``) — the final figures of a collected partition.

Flows read them through ``read_pointer`` / ``read_summary`` (``batch_workflows.lifecycle``),
never by key.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import orjson

from batch_workflows.results import SUCCEEDED

R = TypeVar("R", bound="Record")


class Record:
    """JSON round trip of a dataclass record (nested records listed in `_nested`)."""

    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2, default=str)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in names}  # derived keys are not fields
        for name, kind in cls._nested.items():
            if name in values:
                values[name] = [kind.from_dict(v) for v in values[name]]
        return cls(**values)

    @classmethod
    def from_json(cls: type[R], data: bytes | str) -> R:
        return cls.from_dict(json.loads(data))


@dataclass
class ShardRecord(Record):
    """One stored shard of a partition's requests."""

    artifact: str  # its key in the store
    lines: int
    bytes: int
    sha256: str


@dataclass
class RequestPointer(Record):
    """The current requests of a partition: what ``<name>_requests`` wrote."""

    key: str
    asset: str
    partition: str | None
    endpoint: str
    model: str | None
    params: dict[str, Any]
    content_hash: str
    total_requests: int
    shards: list[ShardRecord]
    namespace: str | None = None  # in the key; None: a key made without one (before namespaces)

    _nested: ClassVar[dict[str, type]] = {"shards": ShardRecord}

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)


@dataclass
class SubmittedBatch(Record):
    """One shard of a submission and the batch that runs it."""

    shard: int
    batch_id: str
    input_file_id: str
    requests: int
    reattached: bool = False
    input_path: str | None = None  # the shard's key in the store (or a local path)
    # Batches of this shard the provider refused for capacity (token_limit_exceeded), oldest
    # first: each was created again, in the same attempt.
    replaced: list[str] = field(default_factory=list)


@dataclass
class SubmissionManifest(Record):
    """What one attempt of a submission created (or re-attached to) at the provider."""

    key: str
    asset: str
    partition: str | None
    endpoint: str
    model: str | None
    attempt: int
    completion_window: str
    batches: list[SubmittedBatch]
    created_at: float = field(default_factory=time.time)

    _nested: ClassVar[dict[str, type]] = {"batches": SubmittedBatch}

    @property
    def batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches]

    @property
    def file_ids(self) -> list[str]:
        return [b.input_file_id for b in self.batches]

    @property
    def request_counts(self) -> list[int]:
        return [b.requests for b in self.batches]

    @property
    def total_requests(self) -> int:
        return sum(b.requests for b in self.batches)

    @property
    def reattached(self) -> bool:
        """True when nothing new was created: every batch already existed."""
        return all(b.reattached for b in self.batches)

    @property
    def created(self) -> int:
        """How many batches this call created (0 when it only re-attached)."""
        return sum(not b.reattached for b in self.batches)


@dataclass
class JoinFigures(Record):
    """What the join of one attempt found outside its rows."""

    unexpected: int = 0  # result lines whose custom_id was never submitted
    duplicates: int = 0  # extra result lines for one custom_id
    unexpected_sample: list[str] = field(default_factory=list)

    SAMPLE: ClassVar[int] = 20

    def plus(self, other: JoinFigures) -> JoinFigures:
        """The figures of two attempts together (the sample stays short)."""
        sample = (self.unexpected_sample + other.unexpected_sample)[: self.SAMPLE]
        return JoinFigures(self.unexpected + other.unexpected,
                           self.duplicates + other.duplicates, sample)


@dataclass
class Summary(Record):
    """The final figures of a collected submission (what the results asset reports).

    Counts and error breakdown are those of the final rows (one per custom_id); tokens and cost
    those of every attempt (all billed); the same figures ``batch-workflows join`` / ``cost``
    give.
    """

    rows: int
    counts: dict[str, int]
    error_breakdown: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Decimal | None
    attempts: int
    submission_key: str = ""
    submitted: int = 0  # requests in the partition's shards
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: int = 0  # result lines whose custom_id was never submitted (all attempts)
    duplicates: int = 0  # extra result lines for one custom_id (all attempts)
    unexpected_sample: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    time_to_complete_seconds: float | None = None
    # Batches that failed as a whole, expired with nothing run or were cancelled (all
    # attempts): ``failures.BatchFailure.to_dict()`` each, with the decision taken.
    batch_failures: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cost_usd is not None and not isinstance(self.cost_usd, Decimal):
            self.cost_usd = Decimal(str(self.cost_usd))

    @property
    def unfinished(self) -> int:
        return self.rows - self.counts.get(SUCCEEDED, 0)

    @property
    def error_rate(self) -> float:
        return self.unfinished / self.rows if self.rows else 0.0

    @property
    def accounted(self) -> bool:
        """Every submitted custom_id has its row; no line for an id never submitted or twice."""
        return self.rows == self.submitted and not self.unexpected and not self.duplicates

    def to_dict(self) -> dict[str, Any]:
        # The derived figures too, for a reader of the JSON file.
        return {**asdict(self), "unfinished": self.unfinished, "error_rate": self.error_rate}
