"""The answer filters: refusals, the MinHash sketch (equal to datasketch's), LSH band keys,
the set of seen keys."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from batch_workflows.flows.distillation.filters import is_refusal
from batch_workflows.flows.distillation.minhash import (
    AnswerSketcher,
    SeenKeys,
    shingle_hash,
    text_keys,
    word_hash,
    words_of,
)


def test_refusals_only_at_the_start():
    texts = ["I'm sorry, but I can't help with that.", '  "I cannot assist with hacking.',
             "I’M SORRY, BUT I CAN’T do that", "Sure! I can't stress this enough: test.",
             "Here is how. As an AI language model, I cannot lie.", "", None]
    assert is_refusal(pa.array(texts)).tolist() == [True, True, True, False, False, False, False]


def _datasketch_signature(words: list[str]) -> np.ndarray:
    def shingle(t: tuple[str, ...]) -> int:
        h = [np.array([word_hash(w.encode())], np.uint64) for w in t]
        return int(shingle_hash(*h)[0])

    m = MinHash(num_perm=64, seed=1, hashfunc=shingle, scheme="affine32")
    m.update_batch([tuple(words[i:i + 3]) for i in range(len(words) - 2)])
    return m.hashvalues


def test_words_are_normalized_runs_between_whitespace():
    words = words_of(pa.array(["Hello  World\n", "hello world", "ＡＢＣ x", "  ", None, "é ü"]))
    assert words.counts.tolist() == [2, 2, 2, 0, 0, 2]
    h = words.hashes.tolist()
    assert h[0:2] == h[2:4] == [word_hash(b"hello"), word_hash(b"world")]
    assert h[4] == word_hash(b"abc") and h[6] == word_hash("é".encode())


def test_signatures_equal_datasketch_value_for_value():
    rng = random.Random(5)
    texts = [" ".join(rng.choice("abcdefghij") * rng.randint(1, 3)
                      for _ in range(rng.randint(2, 40))) for _ in range(300)]
    texts += [None, "", "Ünïcode  TEXT\twith   spaces and more words here ok"]
    sketcher = AnswerSketcher(0.85, min_words=8)
    signatures, rows = sketcher.signatures(words_of(pa.array(texts)))
    split = [t.lower().split() if t else [] for t in texts]
    assert rows.tolist() == [i for i, w in enumerate(split) if len(w) >= 8]
    for sig, row in zip(signatures, rows, strict=True):
        assert np.array_equal(sig, _datasketch_signature(split[row]))


def test_text_keys_follow_words_and_salt():
    words = words_of(pa.array(["a b c", "A  b c", "a c b", "a b c", ""]))
    keys = text_keys(words, np.array([1, 1, 1, 2, 1], np.uint64)).tolist()
    assert keys[0] == keys[1] and len(set(keys)) == 4


def test_near_identical_answers_share_a_band_and_different_ones_do_not():
    rng = random.Random(1)
    base = [f"w{rng.randint(0, 9999)}" for _ in range(80)]
    variant = [*base[:-1], "other"]
    unrelated = [f"w{rng.randint(0, 9999)}" for _ in range(80)]
    sketcher = AnswerSketcher(0.85, min_words=8)
    sigs, _ = sketcher.signatures(words_of(pa.array([" ".join(x) for x in (base, variant,
                                                                             unrelated)])))
    keys = sketcher.band_keys(sigs)
    assert keys.shape == (3, sketcher.bands) == (3, 4)
    assert set(keys[0]) & set(keys[1]) and not set(keys[0]) & set(keys[2])


def test_seen_keys_in_runs():
    seen = SeenKeys()
    assert seen.seen_before(np.array([5, 7, 5], np.uint64)).tolist() == [False, False, True]
    seen.add(np.array([5, 7], np.uint64))
    for i in range(100):
        seen.add(np.array([1000 + i], np.uint64))
    assert len(seen) == 102 and len(seen.runs) < 10
    assert seen.contains(np.array([5, 1050, 6, 2000], np.uint64)).tolist() == [
        True, True, False, False]


def test_seen_keys_bitmap_grows_with_the_keys():
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 2**63, 40_000, dtype=np.uint64) * np.uint64(2)
    seen = SeenKeys()
    for chunk in np.array_split(keys, 7):
        seen.add(chunk)
    assert seen.slot_bits > 16  # grown past its first size, every key marked again
    absent = keys[:1000] + np.uint64(1)  # odd: never added
    assert seen.contains(keys).all() and not seen.contains(absent).any()
    assert seen.seen_before(np.concatenate([absent[:3], keys[:2], absent[:1]])).tolist() == [
        False, False, False, True, True, True]
