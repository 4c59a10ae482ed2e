"""The ``embedding`` strategy: zero-shot moderation by similarity to the policy's examples.

Each item is one /v1/embeddings request; the policy's anchors (each category's examples, or its
description when it has none) go in the same batch as ``anchors:<n>`` requests, so items and
anchors are embedded by the same model at the same price. A category's score for an item is the
mean cosine similarity between the item and the category's anchors (the cosine to the anchors'
mean direction, scaled); the item is in the category when the score reaches the category's
threshold (calibrated on a labelled sample, `calibration`). Measured on the shipped sample,
examples alone score better than examples plus the definition (docs/moderation.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from batch_workflows.flows.moderation.taxonomy import Policy
from batch_workflows.profiles import EMBEDDINGS
from batch_workflows.wire import MAX_INPUTS_PER_REQUEST

ANCHOR_PREFIX = "anchors:"


def anchor_texts(policy: Policy) -> list[tuple[int, str]]:
    """(category index, text) of every anchor, category by category."""
    return [(k, text) for k, c in enumerate(policy.categories)
            for text in (c.examples or (c.description,))]


def embedding_request(custom_id: str, text: str, model: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS,
            "body": {"model": model, "input": text}}


def anchor_requests(policy: Policy, model: str) -> Iterator[dict[str, Any]]:
    """The anchors as requests of up to MAX_INPUTS_PER_REQUEST inputs each, in anchor order."""
    texts = [t for _, t in anchor_texts(policy)]
    for n, start in enumerate(range(0, len(texts), MAX_INPUTS_PER_REQUEST)):
        yield {"custom_id": f"{ANCHOR_PREFIX}{n}", "method": "POST", "url": EMBEDDINGS,
               "body": {"model": model, "input": texts[start:start + MAX_INPUTS_PER_REQUEST]}}


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class AnchorScorer:
    """Category scores of item vectors against the policy's anchor vectors."""

    def __init__(self, policy: Policy, anchor_vectors: np.ndarray):
        owners = np.array([k for k, _ in anchor_texts(policy)])
        if len(owners) != len(anchor_vectors):
            raise ValueError(f"{len(anchor_vectors)} anchor vectors for {len(owners)} anchors")
        unit = unit_rows(np.asarray(anchor_vectors, dtype=np.float32))
        # mean of unit anchors per category: x · mean(a) is the mean cosine to the anchors
        self.centroids = np.stack([unit[owners == k].mean(axis=0)
                                   for k in range(len(policy.categories))])
        self.names = policy.names

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(items × categories) mean cosine similarities."""
        return unit_rows(np.asarray(vectors, dtype=np.float32)) @ self.centroids.T


def categories_over(scores: np.ndarray, thresholds: Sequence[float],
                    names: Sequence[str]) -> list[list[str]]:
    """Per item, the categories whose score reaches their threshold (policy order)."""
    hits = scores >= np.asarray(thresholds, dtype=np.float32)[None, :]
    return [[names[k] for k in np.flatnonzero(row)] for row in hits]
