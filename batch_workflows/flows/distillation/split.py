"""The train/validation split: by a hash of the prompt id, so that a prompt and all its samples
land in one split, the same one on every run, whatever else the partition holds."""

from __future__ import annotations

import hashlib

TRAIN, VALIDATION = "train", "validation"
SPLITS = (TRAIN, VALIDATION)


def split_of(prompt_id: str, validation_fraction: float) -> str:
    """``validation`` for about `validation_fraction` of prompt ids, ``train`` for the rest."""
    digest = hashlib.sha256(prompt_id.encode()).digest()
    return VALIDATION if int.from_bytes(digest[:8], "big") / 2**64 < validation_fraction else TRAIN
