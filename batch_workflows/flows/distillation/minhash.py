"""Answers as words, for the duplicate filters: 64-bit word hashes computed on the UTF-8 bytes of
a whole row group at once, a key per answer (exact duplicates), MinHash signatures over word
3-grams and their LSH band keys (near duplicates), and a compact set of the keys seen so far.

Normalization: Unicode NFKC, lower case; words are the runs of bytes between ASCII whitespace
(so "A  b\\n" and "a b" are the same two words). A word's hash is a polynomial hash of its bytes
mixed by the 64-bit MurmurHash3 finalizer; a 3-word shingle's 32-bit hash combines its words'.

The sketch is datasketch's: its ``affine32`` MinHash (permutations from
``datasketch.MinHash(num_perm, seed)``, each shingle hash pre-mixed by the 32-bit MurmurHash3
finalizer, then ``a * h + b mod 2**32``) and the band split that ``datasketch.MinHashLSH``
chooses for the threshold. Only how it is computed differs: for a whole row group with numpy,
instead of one ``MinHash.update_batch`` per answer (measured: 72 µs an answer, 72 s per
million); the signatures are datasketch's, value for value (a test holds it). Answers of fewer
than `min_words` words are not sketched: short answers ("Positive.") repeat legitimately across
prompts and are compared exactly only.

As in the MinHash deduplication of datatrove and text-dedup, two answers sharing a band key are
near duplicates, with no pairwise check: with the default threshold 0.85 (4 bands of 15 rows) a
pair with Jaccard similarity 0.9 collides with probability 0.60, 0.95 with 0.92, 0.7 with
0.019. Memory: 9 to 10 bytes per band per answer sketched (`SeenKeys`), under 40 MB per million
answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_workflows.extras import require

SHINGLE_WORDS = 3
NUM_PERM = 64
SEED = 1
_M1, _M2 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)
_POLY = np.uint64(0x100000001B3)  # odd: the polynomial hash of a word's bytes
_ROWS_PER_BLOCK = 256  # rows whose (shingles x permutations) matrix is built at once


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (wrapping uint64 arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's pre-mix of every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def word_hash(word: bytes) -> int:
    """The 64-bit hash of one word (what `words_of` computes for every word at once)."""
    h = np.zeros(1, np.uint64)
    with np.errstate(over="ignore"):
        for b in reversed(word):
            h = h * _POLY + np.uint64(b)
    return int(fmix64(h)[0])


def shingle_hash(h0: np.ndarray, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """The 32-bit hash of a 3-word shingle from its words' 64-bit hashes."""
    lo = [h.astype(np.uint32) for h in (h0, h1, h2)]  # the low 32 bits
    return (lo[0] * _M1) ^ (lo[1] * _M2) ^ lo[2]


@dataclass(frozen=True)
class Words:
    """The words of many texts: every word's hash, in order, and how many each text has."""

    hashes: np.ndarray  # uint64, all words of all texts
    counts: np.ndarray  # int64, words per text

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def take(self, mask: np.ndarray) -> Words:
        """The words of the texts where `mask` is true."""
        return Words(self.hashes[np.repeat(mask, self.counts)], self.counts[mask])


def words_of(texts: pa.Array | pa.ChunkedArray) -> Words:
    """Normalize (NFKC, lower case) and cut into words; nulls have none."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.utf8_lower(pc.utf8_normalize(pc.fill_null(texts, ""), form="NFKC"))
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())  # 64-bit offsets: any size of row group
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[texts.offset:texts.offset + len(texts) + 1]
    data = np.frombuffer(texts.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    offsets = offsets - offsets[0]
    if not len(data):
        return Words(np.empty(0, np.uint64), np.zeros(len(texts), np.int64))
    # Word bytes: not ASCII whitespace (9-13, 32); two comparisons beat a table lookup per byte.
    word = (data != 32) & ((data - np.uint8(9)) > 4)
    starts, ends = word.copy(), word.copy()
    starts[1:] &= ~word[:-1]
    ends[:-1] &= ~word[1:]
    # A row's first byte starts a word and its last ends one, whatever the rows beside hold.
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < len(data))]
    starts[inner] = word[inner]
    ends[inner - 1] = word[inner - 1]
    first, last = np.flatnonzero(starts), np.flatnonzero(ends)  # each word's first, last byte
    hashes = fmix64(_poly_hashes(data, first, last))
    counts = np.diff(np.searchsorted(first, offsets))
    return Words(hashes, counts.astype(np.int64))


_CHUNK_BYTES = 1 << 18  # bytes of text hashed at a time (bounds the power tables below)


class _Powers:
    """P^k and P^-k mod 2**64 for k < n, grown as needed (P is odd, so it has an inverse)."""

    def __init__(self) -> None:
        self.up = np.ones(1, np.uint64)
        self.down = np.ones(1, np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, _CHUNK_BYTES)
            inverse = np.uint64(pow(int(_POLY), -1, 1 << 64))
            with np.errstate(over="ignore"):
                up = np.cumprod(np.full(size, _POLY, np.uint64))
                down = np.cumprod(np.full(size, inverse, np.uint64))
            self.up = np.concatenate([[np.uint64(1)], up[:-1]])
            self.down = np.concatenate([[np.uint64(1)], down[:-1]])
        return self.up[:n], self.down


_POWERS = _Powers()


def _poly_hashes(data: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Σ byte_k · P^(k - first) over each word's bytes, mod 2**64, from prefix sums over
    chunks of about `_CHUNK_BYTES` that start at a word (so no word straddles two)."""
    out = np.empty(len(first), np.uint64)
    w0 = 0
    with np.errstate(over="ignore"):
        while w0 < len(first):
            w1 = max(w0 + 1, int(np.searchsorted(last, first[w0] + _CHUNK_BYTES)))
            lo, hi = int(first[w0]), int(last[w1 - 1]) + 1
            up, down = _POWERS.upto(hi - lo)
            prefix = np.empty(hi - lo + 1, np.uint64)  # prefix[k]: the sum over the bytes < k
            prefix[0] = 0
            np.multiply(data[lo:hi], up, out=prefix[1:])
            np.cumsum(prefix[1:], out=prefix[1:])
            f = first[w0:w1] - lo
            out[w0:w1] = (prefix[last[w0:w1] - lo + 1] - prefix[f]) * down[f]
            w0 = w1
    return out


def text_keys(words: Words, salt: np.ndarray) -> np.ndarray:
    """One 64-bit key per text from its word sequence and a per-text salt (e.g. the hash of
    its prompt id); texts without words get the salt's mix alone."""
    with np.errstate(over="ignore"):
        position = np.arange(len(words.hashes), dtype=np.uint64) - np.repeat(
            words.starts.astype(np.uint64), words.counts)
        mixed = fmix64(words.hashes ^ (position * np.uint64(0x9E3779B97F4A7C15)))
        sums = np.zeros(len(words.counts), np.uint64)
        has = words.counts > 0
        if has.any():
            sums[has] = np.add.reduceat(mixed, words.starts[has])
        return fmix64(sums ^ fmix64(salt.astype(np.uint64) + words.counts.astype(np.uint64)))


class AnswerSketcher:
    """MinHash signatures and LSH band keys of many answers at once."""

    def __init__(self, threshold: float, min_words: int, num_perm: int = NUM_PERM,
                 seed: int = SEED):
        require("distillation", "near-duplicate detection (MinHash)")
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a, self.b = a.astype(np.uint32), b.astype(np.uint32)
        self.num_perm, self.seed = num_perm, seed
        self.min_words = max(min_words, SHINGLE_WORDS)

    def shingles(self, words: Words) -> tuple[np.ndarray, np.ndarray]:
        """(each shingle's hash, the row of each) for the rows with at least `min_words`."""
        h, counts = words.hashes, words.counts
        if len(h) < SHINGLE_WORDS:
            return np.empty(0, np.uint32), np.empty(0, np.int64)
        n = len(h) - SHINGLE_WORDS + 1  # a shingle at each word, were there no rows
        row = np.repeat(np.arange(len(counts)), counts)[:n]
        # A shingle starts at every word with two more words of the same row after it.
        left = np.repeat(np.cumsum(counts), counts)[:n] - np.arange(n)
        ok = (left >= SHINGLE_WORDS) & np.repeat(counts >= self.min_words, counts)[:n]
        return shingle_hash(h[:-2], h[1:-1], h[2:])[ok], row[ok]

    def signatures(self, words: Words) -> tuple[np.ndarray, np.ndarray]:
        """(signatures of the sketched rows, num_perm uint32 each; their row numbers)."""
        hashes, row = self.shingles(words)
        rows = np.flatnonzero(words.counts >= self.min_words)
        if not len(rows):
            return np.empty((0, self.num_perm), np.uint32), rows
        mixed = fmix32(hashes)
        # where each sketched row's shingles start, and the end of the last
        bounds = np.append(np.searchsorted(row, rows), len(mixed))
        blocks = range(0, len(rows), _ROWS_PER_BLOCK)
        widest = max(bounds[min(lo + _ROWS_PER_BLOCK, len(rows))] - bounds[lo] for lo in blocks)
        permuted_all = np.empty((self.num_perm, widest), np.uint32)  # one buffer for all blocks
        out = np.empty((self.num_perm, len(rows)), np.uint32)
        a, b = self.a[:, None], self.b[:, None]
        for lo in blocks:
            hi = min(lo + _ROWS_PER_BLOCK, len(rows))
            begin, end = bounds[lo], bounds[hi]
            # permutations x shingles: each row's minimum is a reduction along contiguous memory
            permuted = permuted_all[:, :end - begin]
            np.multiply(a, mixed[begin:end], out=permuted)
            permuted += b
            out[:, lo:hi] = np.minimum.reduceat(permuted, bounds[lo:hi] - begin, axis=1)
        return out.T.copy(), rows

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One 64-bit key per band and row (n x bands); the band's number is mixed in, so keys
        of different bands never meet."""
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
    """A set of 64-bit keys as sorted numpy runs (8 bytes a key; runs merged as they double),
    behind a bitmap of the keys' top bits (1 to 2 bytes a key): a key not in the set is told
    so by one lookup there, but for about 1 in 9 that then search the runs (measured at a
    million answers: half the time of searching every run for every key)."""

    MAX_RUN = 1 << 19  # 4 MB: behind the bitmap, more runs cost little, and merges stay small
    BITMAP_BITS_PER_KEY = 8

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []
        self.slot_bits = 16  # the bitmap has 2**slot_bits bits, one per value of the top bits
        self.bitmap = np.zeros(1 << (self.slot_bits - 3), np.uint8)

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        order = np.argsort(keys)
        found = np.empty(len(keys), bool)
        found[order] = self._contains_sorted(keys[order])
        return found

    def _contains_sorted(self, ordered: np.ndarray) -> np.ndarray:
        byte, bit = self._bitmap_places(ordered)
        maybe = np.flatnonzero(self.bitmap[byte] & bit)  # the others are not in the set
        needles = ordered[maybe]
        hit = np.zeros(len(needles), bool)
        # Sorted needles walk each run in order: far fewer cache misses than random ones.
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, needles), len(run) - 1)
            hit |= run[at] == needles
        found = np.zeros(len(ordered), bool)
        found[maybe] = hit
        return found

    def _bitmap_places(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's byte in the bitmap and its bit in that byte."""
        slot = keys >> np.uint64(64 - self.slot_bits)
        bit = np.left_shift(np.uint8(1), (slot & np.uint64(7)).astype(np.uint8))
        return slot >> np.uint64(3), bit

    def _mark(self, keys: np.ndarray) -> None:
        byte, bit = self._bitmap_places(keys)
        np.bitwise_or.at(self.bitmap, byte, bit)

    def seen_before(self, keys: np.ndarray) -> np.ndarray:
        """For each key in order: already in the set, or earlier in `keys` itself."""
        order = np.argsort(keys, kind="stable")  # equal keys keep their order
        ordered = keys[order]
        seen = np.empty(len(keys), bool)
        seen[order] = self._contains_sorted(ordered) | np.concatenate(
            [[False], ordered[1:] == ordered[:-1]])
        return seen

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        self.runs.append(_unique_sorted(np.sort(keys)))
        # Merge while the last two are about equal, but never into a run above MAX_RUN keys:
        # a merge briefly needs three times the merged run, and that must not grow.
        while (len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1])
               and len(self.runs[-2]) + len(self.runs[-1]) <= self.MAX_RUN):
            last = self.runs.pop()
            # Both runs are sorted: a stable sort (timsort) merges them in linear time.
            self.runs[-1] = _unique_sorted(np.sort(np.concatenate([self.runs[-1], last]),
                                                   kind="stable"))
        if len(self) * self.BITMAP_BITS_PER_KEY <= 1 << self.slot_bits:
            self._mark(keys)
            return
        # Too full to tell most keys apart: a bitmap twice as large (or more), from every run.
        while len(self) * self.BITMAP_BITS_PER_KEY > 1 << self.slot_bits:
            self.slot_bits += 1
        self.bitmap = np.zeros(1 << (self.slot_bits - 3), np.uint8)
        for run in self.runs:
            self._mark(run)


def _unique_sorted(keys: np.ndarray) -> np.ndarray:
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
