"""Documents, and the corpus shipped with every Python: the language reference in `pydoc_data`.

A document is `(id, text, source, title)`. The shipped corpus is the language reference topics
of the standard library's `pydoc_data` (79 documents in Python 3.11; id = the topic key, e.g.
"try", "lambda"; title = the topic's heading), split into a few shards so that it maps onto a
few partitions, keyed ``pydoc-<i>-of-<n>``. It needs no download, so every flow can run on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PYDOC_SOURCE = "pydoc_data"
PYDOC_PREFIX = "pydoc-"
DEFAULT_PYDOC_SHARDS = 2


@dataclass(frozen=True)
class Document:
    """One document: its id (unique within a collection), text and where it came from."""

    id: str
    text: str
    source: str
    title: str = ""  # the embeddings flow prepends it to every chunk (contextual chunk header)


def pydoc_topics() -> dict[str, str]:
    """The language reference topics of this Python's `pydoc_data`, by topic key."""
    from pydoc_data.topics import topics

    return dict(topics)


def first_line(text: str) -> str:
    """The first non-blank line, stripped: a pydoc topic's heading (`The "try" statement`)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def pydoc_shard_keys(shards: int = DEFAULT_PYDOC_SHARDS) -> list[str]:
    """Partition keys of the shipped corpus: `pydoc-1-of-2`, `pydoc-2-of-2`, ..."""
    return [f"{PYDOC_PREFIX}{i}-of-{shards}" for i in range(1, shards + 1)]


def parse_pydoc_key(key: str) -> tuple[int, int] | None:
    """`pydoc-i-of-n` -> (i, n); None for any other key."""
    if not key.startswith(PYDOC_PREFIX):
        return None
    try:
        i, n = key[len(PYDOC_PREFIX) :].split("-of-")
        index, shards = int(i), int(n)
    except ValueError:
        return None
    return (index, shards) if 1 <= index <= shards else None


def pydoc_documents(shard: int = 1, shards: int = 1) -> Iterator[Document]:
    """Topics of shard `shard` (1-based) of `shards`: contiguous runs of sorted topic keys,
    cut so that the shards hold about the same amount of text."""
    topics = pydoc_topics()
    keys = sorted(topics)
    total = sum(len(topics[k]) for k in keys)
    done = 0
    for key in keys:
        # The shard of a topic is where the middle of its text falls: stable and balanced.
        middle = done + len(topics[key]) / 2
        done += len(topics[key])
        if min(int(middle * shards / total), shards - 1) == shard - 1:
            yield Document(key, topics[key], PYDOC_SOURCE, first_line(topics[key]))
