"""Prompt prefixes that rows of one run share, prefilled once.

Every request of a moderation day starts with the same 1,500-token policy prompt and ends with a
short item, so prefilling each row whole spends nearly all of its prefill on tokens another row
has already computed. Rows whose prompts start with the same `min_tokens` tokens form a group;
the group's common prefix goes through the model once, as a one-row KV cache that each of its
rows copies when it is admitted, prefilling only the rest of its prompt. The cache is dropped
once the group's last row is admitted.

The copies are not shared memory: a row still holds its whole prompt's KV and takes as much of
the KV budget as before. What is saved is compute (vLLM's prefix cache saves both, in pages).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

# A shorter common prefix (a chat template's default system line) saves too little to pay for
# the extra forward pass and the split prefill.
MIN_SHARED_TOKENS = 128


class SharedPrefixes:
    """Which rows of a run share which prefix, and the prefixes' caches while rows need them."""

    def __init__(self, rows: Iterable[Any], min_tokens: int | None = MIN_SHARED_TOKENS):
        self._group: dict[int, int] = {}  # id(row) -> the group it shares a prefix with
        self._prefix: list[list[int]] = []  # per group: the tokens its rows share
        self._waiting: list[int] = []  # per group: rows not admitted yet
        self._caches: dict[int, Any] = {}
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
            self._waiting.append(len(members))

    def group(self, row: Any) -> int | None:
        """The group whose prefix `row` starts with (None: it is prefilled whole)."""
        return self._group.get(id(row)) if self._enabled else None

    def length(self, row: Any) -> int:
        """The prompt tokens `row` takes from its group's prefix."""
        group = self.group(row)
        return 0 if group is None else len(self._prefix[group])

    def held_tokens(self, rows: Iterable[Any]) -> int:
        """Tokens of the prefix caches held now, plus those admitting `rows` would compute."""
        groups = set(self._caches) | {g for g in map(self.group, rows) if g is not None}
        return sum(len(self._prefix[g]) for g in groups)

    def cache(self, group: int, compute: Callable[[list[int]], Any]) -> Any | None:
        """The group's one-row prefix cache, computed on first use. compute() returns None when
        the model's cache cannot be copied into rows; sharing is then off for the rest of the
        run."""
        if not self._enabled:
            return None
        if group not in self._caches:
            found = compute(self._prefix[group])
            if found is None:
                self._enabled = False
                self._caches.clear()
                return None
            self._caches[group] = found
        return self._caches[group]

    def admitted(self, rows: Iterable[Any]) -> None:
        """Rows left the waiting queue: drop the caches no waiting row needs any more."""
        for row in rows:
            group = self.group(row)
            if group is None:
                continue
            self._waiting[group] -= 1
            if self._waiting[group] <= 0:
                self._caches.pop(group, None)
