"""What the shard writer wrote: each file's path, size and sha256, and the set as a whole."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shard:
    """One written JSONL file."""

    path: str
    lines: int
    bytes: int
    sha256: str


@dataclass
class ShardManifest:
    """What `write_shards` wrote, in order."""

    endpoint: str
    model: str | None
    shards: list[Shard] = field(default_factory=list)

    @property
    def total_requests(self) -> int:
        return sum(s.lines for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def content_hash(self) -> str:
        """sha256 over the shards' sha256 hex digests, in order: changes iff content changes."""
        h = hashlib.sha256()
        for s in self.shards:
            h.update(s.sha256.encode("ascii") + b"\n")
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "total_requests": self.total_requests,
            "total_bytes": self.total_bytes,
            "content_hash": self.content_hash,
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardManifest:
        return cls(
            endpoint=data["endpoint"],
            model=data.get("model"),
            shards=[
                Shard(path=s["path"], lines=s["lines"], bytes=s["bytes"], sha256=s["sha256"])
                for s in data["shards"]
            ],
        )

    def write_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read_json(cls, path: str | os.PathLike[str]) -> ShardManifest:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
