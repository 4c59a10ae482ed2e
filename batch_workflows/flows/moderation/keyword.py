"""The trivial baseline: an item is in a category when it contains one of the category's
keywords (case-insensitive, at the start of a word: ``kill`` matches "killed", not "skill").

It is the figure a model must beat to be worth its cost; it knows nothing of context, so
"I killed it at my talk" is violence to it.
"""

from __future__ import annotations

import re

from batch_workflows.flows.moderation.taxonomy import Policy


class KeywordMatcher:
    """The policy's keyword lists, compiled once into one pattern (one scan of a text)."""

    def __init__(self, policy: Policy):
        self.names = policy.names
        self.owners: dict[str, set[int]] = {}  # a keyword (lower case) -> its categories
        for k, c in enumerate(policy.categories):
            for word in c.keywords:
                self.owners.setdefault(word.lower(), set()).add(k)
        # longest first, so a keyword that starts another one does not hide it
        words = sorted(self.owners, key=len, reverse=True)
        self.pattern = re.compile(
            r"\b(?=(" + "|".join(re.escape(w) for w in words) + "))", re.IGNORECASE
        ) if words else None

    def categories(self, text: str) -> list[str]:
        """The categories one of whose keywords `text` contains, in policy order."""
        if self.pattern is None:
            return []
        found: set[int] = set()
        for match in self.pattern.finditer(text):
            found |= self.owners[match.group(1).lower()]
        return [self.names[k] for k in sorted(found)]
