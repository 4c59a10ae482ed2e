"""Structured outputs by constrained decoding with xgrammar (the library vLLM and SGLang use).

Each step, a row with a grammar gets a token bitmask from its matcher and every token the grammar
forbids is set to -inf before sampling, so the answer is valid JSON (matching its schema) unless
max_tokens cut it. Nothing is repaired or parsed afterwards.

JSON is generated compact (no free whitespace between tokens): a small model allowed any
whitespace can loop on newlines until max_tokens. `json_schema` uses xgrammar's strict mode
(no properties beyond the schema's), whose outputs always validate against the schema as given.
"""

from __future__ import annotations

import json
import re
from typing import Any

from batch_workflows.backends.chat_request import ResponseFormat

# xgrammar's C++ errors start with "[12:00:00] /project/cpp/file.cc:123: " and sometimes
# "Check failed: (...) is false: "; the rest is the message a user can act on.
_CPP_PREFIX = re.compile(r"^\[[^\]]*\]\s+\S+:\d+:\s*(Check failed: \(.*?\) is false:\s*)?")


class GrammarError(ValueError):
    """A response_format the library cannot compile."""


class Grammars:
    """Compiled grammars for one tokenizer (cached by schema), matchers and logits masking."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]):
        import xgrammar as xgr

        self._xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )
        self.vocab_size = vocab_size
        # The compiler caches compiled grammars by schema text: a batch of requests that share
        # a schema compiles it once.
        self._compiler = xgr.GrammarCompiler(self.info, max_threads=2)

    def token_bytes(self) -> list[bytes]:
        """Each token id's bytes as generated (for logprobs)."""
        return list(self.info.decoded_vocab)

    def compile(self, fmt: ResponseFormat) -> Any:
        """The compiled grammar of a json_object / json_schema format; GrammarError if none."""
        if fmt.type == "json_object":
            schema, strict = {"type": "object"}, False
        else:
            schema, strict = fmt.schema, True
        try:
            text = json.dumps(schema)  # key order kept: properties come in the schema's order
            return self._compiler.compile_json_schema(
                text, any_whitespace=False, strict_mode=strict
            )
        # xgrammar reports an unsupported or malformed schema as RuntimeError (from C++) or
        # ValueError/TypeError (from its Python side); anything else is a real failure.
        except (RuntimeError, ValueError, TypeError) as exc:
            message = _CPP_PREFIX.sub("", str(exc)).strip().splitlines()
            raise GrammarError(message[0] if message else type(exc).__name__) from exc

    def matcher(self, compiled: Any) -> Any:
        return self._xgr.GrammarMatcher(compiled)

    def mask(self, logits: Any, rows: list[int], matchers: list[Any]) -> None:
        """Set the tokens each row's grammar forbids to -inf, in place (logits: [batch, vocab])."""
        bitmask = self._xgr.allocate_token_bitmask(logits.shape[0], self.vocab_size)
        for row, matcher in zip(rows, matchers, strict=True):
            matcher.fill_next_token_bitmask(bitmask, row)
        self._xgr.apply_token_bitmask_inplace(logits, bitmask, indices=rows)
