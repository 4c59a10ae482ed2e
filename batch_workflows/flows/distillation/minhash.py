"""Near-duplicate answers: MinHash signatures over word 3-grams, LSH band keys, and a compact set
of the keys seen so far.

The sketch is datasketch's: its ``affine32`` MinHash (permutations from
``datasketch.MinHash(num_perm, seed)``, each shingle's 32-bit hash pre-mixed by the MurmurHash3
finalizer, then ``a * h + b mod 2**32``) and the band split that ``datasketch.MinHashLSH``
chooses for the threshold. What differs is only how it is computed: for a whole row group at
once with numpy, instead of one ``MinHash.update_batch`` per answer (measured: 72 µs an answer,
72 s per million). The signatures are equal to datasketch's, value for value (a test holds it).

Answers are compared after `normalize` (Unicode NFKC, lower case, runs of whitespace as one
space). Shingles are 3 consecutive words; a word's hash is its CRC-32. Answers of fewer than
`min_words` words are not sketched: short answers ("Positive.") repeat legitimately across
prompts and are compared exactly only.

Like the MinHash deduplication of datatrove and text-dedup, two answers sharing a band key are
near duplicates, with no pairwise check: with the default threshold 0.85 (4 bands of 15 rows)
a pair with Jaccard similarity 0.9 collides with probability 0.60, 0.95 with 0.92, 0.7 with
0.019. Memory: 8 bytes per band per answer sketched (`SeenKeys`), 32 MB per million answers.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SHINGLE_WORDS = 3
NUM_PERM = 64
SEED = 1
_M1, _M2 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)
_ROWS_PER_BLOCK = 512  # rows whose (shingles x permutations) matrix is built at once


def normalize(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC, lower case, whitespace runs as one space, trimmed (nulls stay null)."""
    texts = pc.utf8_normalize(texts, form="NFKC")
    texts = pc.replace_substring_regex(pc.utf8_lower(texts), pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(texts)


def word_hashes(words: list[str]) -> np.ndarray:
    return np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint32,
                       count=len(words))


def shingle_hash(h0: np.ndarray, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """The 32-bit hash of a 3-word shingle from its words' hashes."""
    return (h0 * _M1) ^ (h1 * _M2) ^ h2


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's pre-mix of every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class AnswerSketcher:
    """MinHash signatures and LSH band keys of many normalized answers at once."""

    def __init__(self, threshold: float, min_words: int, num_perm: int = NUM_PERM,
                 seed: int = SEED):
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self.num_perm, self.seed = num_perm, seed
        self.min_words = max(min_words, SHINGLE_WORDS)

    def shingles(self, normalized: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shingle hashes, the row of each, rows sketched): rows with at least `min_words`."""
        words = pc.split_pattern(pc.fill_null(normalized, ""), " ")
        counts = pc.list_value_length(words).to_numpy(zero_copy_only=False)
        eligible = counts >= self.min_words
        flat = pc.list_flatten(words)
        encoded = pc.dictionary_encode(flat)
        h = word_hashes(encoded.dictionary.to_pylist())[encoded.indices.to_numpy()]
        starts = np.concatenate([[0], np.cumsum(counts)])
        row = np.repeat(np.arange(len(counts)), counts)
        if len(h) < SHINGLE_WORDS:
            return np.empty(0, np.uint32), np.empty(0, np.int64), eligible
        # A shingle starts at every word with two more words of the same row after it.
        first = np.arange(len(h) - SHINGLE_WORDS + 1)
        ok = (starts[row[first] + 1] - first >= SHINGLE_WORDS) & eligible[row[first]]
        first = first[ok]
        return shingle_hash(h[first], h[first + 1], h[first + 2]), row[first], eligible

    def signatures(self, normalized: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(signatures of the sketched rows, num_perm uint32 each; their row numbers)."""
        hashes, row, eligible = self.shingles(normalized)
        rows = np.flatnonzero(eligible)
        if not len(rows):
            return np.empty((0, self.num_perm), np.uint32), rows
        mixed = fmix32(hashes)
        bounds = np.searchsorted(row, rows)  # where each sketched row's shingles start
        out = []
        for lo in range(0, len(rows), _ROWS_PER_BLOCK):
            hi = min(lo + _ROWS_PER_BLOCK, len(rows))
            begin = bounds[lo]
            end = bounds[hi] if hi < len(rows) else len(mixed)
            permuted = np.multiply.outer(mixed[begin:end], self.a)
            permuted += self.b
            out.append(np.minimum.reduceat(permuted, bounds[lo:hi] - begin, axis=0))
        return np.concatenate(out), rows

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One 64-bit key per band and row (n x bands); the band's number is mixed in, so keys of
        different bands never meet."""
        n = len(signatures)
        keys = np.empty((n, self.bands), np.uint64)
        with np.errstate(over="ignore"):
            for band in range(self.bands):
                k = np.full(n, 0xCBF29CE484222325 ^ band, np.uint64)
                for col in range(band * self.rows, (band + 1) * self.rows):
                    k = (k ^ signatures[:, col].astype(np.uint64)) * np.uint64(0x100000001B3)
                keys[:, band] = k
        return keys


class SeenKeys:
    """A set of 64-bit keys as sorted numpy runs (8 bytes a key; runs merged as they double)."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[at] == keys
        return found

    def seen_before(self, keys: np.ndarray) -> np.ndarray:
        """For each key in order: already in the set, or earlier in `keys` itself."""
        if not len(keys):
            return np.zeros(0, bool)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return self.contains(keys) | (first[inverse] != np.arange(len(keys)))

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        self.runs.append(np.unique(keys))
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.union1d(self.runs[-1], last)
