"""Where the lifecycle keeps its artifacts: files by key under one root.

``Storage`` is the small protocol the lifecycle needs; ``LocalFolder`` implements it on a
folder, and ``resources.ArtifactStore`` (a local folder or ``s3://bucket/prefix``) satisfies it
too. Keys are relative posix paths such as ``embeddings/p1/results.parquet``. Large files move
with ``put_file``/``get_file`` (streamed), never through memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

TEMP_SUFFIX = ".artifact-tmp"


class Storage(Protocol):
    """Files by key: what the lifecycle reads and writes."""

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str: ...
    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> str: ...


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative posix path; raise ValueError otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError("artifact key must be a non-empty string")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise ValueError(f"artifact key must be a relative posix path: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"artifact key must not contain empty, '.' or '..' parts: {key!r}")
    return key


class LocalFolder:
    """``Storage`` on a local folder; writes are atomic (a crash leaves the old file or none)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, key: str) -> Path:
        """The file behind `key`."""
        return self.root.joinpath(*check_key(key).split("/"))

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> str:
        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        dest = self.path(key)
        if source.resolve() != dest:  # already in place when the caller wrote it there
            with atomic_target(dest) as tmp:
                shutil.copyfile(source, tmp)
        return str(dest)

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> Path:
        source, dest = self.path(key), Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"no artifact at {source}")
        with atomic_target(dest) as tmp:
            shutil.copyfile(source, tmp)
        return dest

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no artifact at {path}")
        return path.read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        dest = self.path(key)
        with atomic_target(dest) as tmp:
            tmp.write_bytes(data)
        return str(dest)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""
        folder = prefix.rpartition("/")[0]
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.endswith(TEMP_SUFFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""
        self.path(key).unlink(missing_ok=True)


class atomic_target:
    """A temporary sibling path that replaces `dest` only if the block succeeds."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.",
                                    suffix=TEMP_SUFFIX)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)
