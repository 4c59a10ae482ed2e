"""The trivial baseline: an item is in a category when it contains one of the category's
keywords (case-insensitive, at the start of a word: ``kill`` matches "killed", not "skill").

It is the figure a model must beat to be worth its cost; it knows nothing of context, so
"I killed it at my talk" is violence to it.
"""

from __future__ import annotations

import re

from batch_workflows.flows.moderation.taxonomy import Policy


class KeywordMatcher:
    """The policy's keyword lists, compiled once."""

    def __init__(self, policy: Policy):
        self.patterns = [
            (c.name, re.compile(r"\b(?:" + "|".join(re.escape(k) for k in c.keywords) + ")",
                                re.IGNORECASE))
            for c in policy.categories if c.keywords
        ]

    def categories(self, text: str) -> list[str]:
        """The categories one of whose keywords `text` contains, in policy order."""
        return [name for name, pattern in self.patterns if pattern.search(text)]
