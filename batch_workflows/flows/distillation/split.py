"""The train/validation split: by a hash of the prompt id, so that a prompt and all its samples
land in one split, the same one on every run, whatever else the partition holds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from batch_workflows.flows.distillation.minhash import fmix64, text_keys, words_of

TRAIN, VALIDATION = "train", "validation"
SPLITS = (TRAIN, VALIDATION)


def prompt_keys(prompt_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each prompt id (vectorized; also the exact-duplicate filter's salt)."""
    return text_keys(words_of(prompt_ids), np.zeros(len(prompt_ids), np.uint64))


def in_validation(keys: np.ndarray, validation_fraction: float) -> np.ndarray:
    """True for about `validation_fraction` of prompt keys (`prompt_keys`)."""
    return fmix64(keys) < np.uint64(min(int(validation_fraction * 2**64), 2**64 - 1))


def split_of(prompt_id: str, validation_fraction: float) -> str:
    """``validation`` or ``train`` for one prompt id."""
    keys = prompt_keys(pa.array([prompt_id]))
    return VALIDATION if in_validation(keys, validation_fraction)[0] else TRAIN
