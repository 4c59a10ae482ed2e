"""Which answers become training examples, and why each other one does not (Curator's
``parse(row, response)`` hook, for a whole row group at a time).

Every request ends with exactly one outcome: kept, or the first of these reasons that applies,
in this order (`DROP_REASONS`):

=====================  ===================================================================
``failed``             the request failed over HTTP after every attempt (lifecycle status)
``errored``            it never ran, e.g. ``batch_expired`` (lifecycle status)
``missing``            no result line came back for it (lifecycle status)
``finish_length``      the answer was cut at ``max_tokens`` (finish_reason ``length``)
``content_filter``     the provider withheld or cut it (finish_reason ``content_filter``)
``empty``              no content, or only whitespace (no words, `minhash.words_of`)
``refusal``            the answer starts with one of `REFUSAL_PREFIXES`
``over_token_limit``   more completion tokens than ``max_answer_tokens``
``exact_duplicate``    the same prompt with the same answer as an earlier example, after
                       normalization (a 64-bit key of prompt id + the answer's words, `minhash`)
``near_duplicate``     an answer whose MinHash shares an LSH band with an earlier answer of
                       at least ``near_dup_min_words`` words (see `minhash`)
=====================  ===================================================================

So kept + the drops by reason = the requests submitted, always. "Earlier" is the order in which
the dataset step reads the rows (by part, then by custom_id): deterministic for the same results.

Refusals are matched conservatively: only at the start of the answer (after quotes and
whitespace, case-insensitive, curly apostrophes read as straight ones), only phrases that
decline the request itself. An answer that merely contains "I can't" somewhere is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_workflows.flows.distillation.minhash import (
    AnswerSketcher,
    SeenKeys,
    Words,
    text_keys,
    words_of,
)

KEPT = "kept"
DROP_REASONS = (
    "failed", "errored", "missing", "finish_length", "content_filter", "empty", "refusal",
    "over_token_limit", "exact_duplicate", "near_duplicate",
)
# Code 0 is kept; code i + 1 is DROP_REASONS[i].
OUTCOMES = (KEPT, *DROP_REASONS)
CODE = {name: i for i, name in enumerate(OUTCOMES)}

REFUSAL_PREFIXES = (
    "i'm sorry, but i can't", "i'm sorry, but i cannot", "i am sorry, but i cannot",
    "i am sorry, but i can't", "sorry, but i can't", "sorry, i can't help",
    "i can't help with that", "i cannot help with that", "i can't assist with",
    "i cannot assist with", "i'm unable to help", "i am unable to help",
    "i'm not able to help with", "i won't be able to help", "i cannot comply",
    "i can't comply", "as an ai language model, i cannot", "as an ai language model, i can't",
    "as an ai, i cannot", "i must decline",
)
_REFUSAL = "^[\\s\"'“”«]*(?:" + "|".join(re.escape(p) for p in REFUSAL_PREFIXES) + ")"


@dataclass(frozen=True)
class FilterSettings:
    max_answer_tokens: int
    near_dup_threshold: float
    near_dup_min_words: int


def is_refusal(texts: pa.Array) -> np.ndarray:
    """Whether each answer starts with a refusal phrase (nulls: False)."""
    lowered = pc.replace_substring(pc.utf8_lower(texts), "’", "'")
    return pc.fill_null(pc.match_substring_regex(lowered, _REFUSAL), False).to_numpy(
        zero_copy_only=False)


class AnswerFilter:
    """Decides the outcome of each request, a batch of joined rows at a time; remembers what it
    has seen for the duplicate reasons (9 to 10 bytes per answer, as many per band per long
    answer)."""

    def __init__(self, settings: FilterSettings):
        self.settings = settings
        self.sketcher = AnswerSketcher(settings.near_dup_threshold, settings.near_dup_min_words)
        self.exact = SeenKeys()
        self.bands = SeenKeys()

    def outcomes(self, rows: pa.Table, prompts: np.ndarray) -> np.ndarray:
        """The outcome code of each row (columns: status, finish_reason, content,
        completion_tokens; `prompts`: each row's `split.prompt_keys`), in row order."""
        n = rows.num_rows
        code = np.zeros(n, np.int8)

        def drop(reason: str, mask: np.ndarray) -> None:
            code[(code == 0) & mask] = CODE[reason]

        status = rows.column("status")
        for reason in ("failed", "errored", "missing"):
            drop(reason, pc.equal(status, reason).to_numpy(zero_copy_only=False))
        finish = pc.fill_null(rows.column("finish_reason"), "")
        drop("finish_length", pc.equal(finish, "length").to_numpy(zero_copy_only=False))
        drop("content_filter", pc.equal(finish, "content_filter").to_numpy(zero_copy_only=False))
        content = rows.column("content").combine_chunks()
        words = words_of(content)
        drop("empty", words.counts == 0)
        drop("refusal", is_refusal(content))
        tokens = pc.fill_null(rows.column("completion_tokens"), 0).to_numpy(zero_copy_only=False)
        drop("over_token_limit", tokens > self.settings.max_answer_tokens)
        self._duplicates(words, prompts, code)
        return code

    def _duplicates(self, words: Words, prompts: np.ndarray, code: np.ndarray) -> None:
        live = code == 0
        if not live.any():
            return
        answers = words.take(live)
        keys = text_keys(answers, prompts[live])
        again = self.exact.seen_before(keys)
        where = np.flatnonzero(live)
        code[where[again]] = CODE["exact_duplicate"]
        self.exact.add(keys)
        signatures, sketched = self.sketcher.signatures(answers.take(~again))
        if not len(sketched):
            return
        bands = self.sketcher.band_keys(signatures)
        hit = self.bands.seen_before(bands.ravel()).reshape(bands.shape).any(axis=1)
        code[where[~again][sketched[hit]]] = CODE["near_duplicate"]
        self.bands.add(bands.ravel())
