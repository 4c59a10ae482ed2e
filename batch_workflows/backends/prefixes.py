"""Prompt prefixes that rows of one run share, prefilled once.

Every request of a moderation day starts with the same 1,500-token policy prompt and ends with a
short item, so prefilling each row whole spends nearly all of its prefill on tokens another row
has already computed. Rows whose prompts start with the same `min_tokens` tokens form a group
with their common prefix. When rows of a group are admitted, the decoding loop copies the
prefix's KV columns from a row of the group already in the batch (its first columns), or, when
none is, runs the prefix through the model once for all of them; each row then prefills only
the rest of its prompt.

Nothing is held between admissions, and the copies are not shared memory: a row holds its whole
prompt's KV and takes as much of the KV budget as before. What is saved is compute (vLLM's
paged prefix cache saves memory too, with attention kernels that transformers does not have).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

# A shorter common prefix (a chat template's default system line) saves too little to pay for
# the extra forward pass and the split prefill.
MIN_SHARED_TOKENS = 128


class SharedPrefixes:
    """Which rows of a run share which prefix."""

    def __init__(self, rows: Iterable[Any], min_tokens: int | None = MIN_SHARED_TOKENS):
        self._group: dict[int, int] = {}  # id(row) -> the group it shares a prefix with
        self._prefix: list[list[int]] = []  # per group: the tokens its rows share
        self._enabled = min_tokens is not None and min_tokens > 0
        if not self._enabled:
            return
        starts: dict[tuple[int, ...], list[Any]] = defaultdict(list)
        for row in rows:
            if len(row.prompt_ids) > min_tokens:
                starts[tuple(row.prompt_ids[:min_tokens])].append(row)
        for members in starts.values():
            if len(members) < 2:
                continue
            prompts = [r.prompt_ids for r in members]
            # Short of the shortest prompt: its last token must be prefilled to give logits.
            length = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
            for row in members:
                self._group[id(row)] = len(self._prefix)
            self._prefix.append(prompts[0][:length])

    def group(self, row: Any) -> int | None:
        """The group whose prefix `row` starts with (None: it is prefilled whole)."""
        return self._group.get(id(row)) if self._enabled else None

    def prefix(self, group: int) -> list[int]:
        return self._prefix[group]

    def length(self, row: Any) -> int:
        """The prompt tokens `row` takes from its group's prefix."""
        group = self.group(row)
        return 0 if group is None else len(self._prefix[group])

    def disable(self) -> None:
        """This model's cache cannot be copied into rows: every row is prefilled whole."""
        self._enabled = False
