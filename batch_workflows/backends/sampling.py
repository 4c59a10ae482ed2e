"""Choosing each row's next token from a batch of logits, with that row's own settings.

Per row: logit_bias, frequency/presence penalties (OpenAI's formula, over the tokens generated
so far), a grammar mask, then greedy (temperature 0) or nucleus sampling with the row's own
torch.Generator, so that a seeded row draws the same tokens whatever shares its batch.
Log-probabilities are those of the model's distribution (before any of the above), as vLLM
reports them by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GREEDY_BELOW = 1e-4  # temperature 0 means greedy; tiny values would overflow the softmax


@dataclass
class Sampling:
    """One row's sampling settings and the state they keep between steps."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    matcher: Any = None  # an xgrammar GrammarMatcher, for structured outputs
    top_logprobs: int | None = None  # None: no logprobs; else how many alternatives per token
    generator: Any = None
    counts: Any = None  # generated-token counts, kept only when a penalty is set

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def rng(self) -> Any:
        if self.generator is None:
            import torch

            self.generator = torch.Generator()
            if self.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.seed % (2**63))
        return self.generator


@dataclass
class Choice:
    """The token a row got, with its log-probability and the top alternatives when asked."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def choose(logits: Any, rows: list[Sampling], grammars: Any = None) -> list[Choice]:
    """One Choice per row; logits is a float32 [len(rows), vocab] tensor, modified in place."""
    import torch

    logprobs = _logprobs(logits, rows)
    _bias_and_penalise(logits, rows)
    constrained = [i for i, r in enumerate(rows) if r.matcher is not None]
    if constrained:
        grammars.mask(logits, constrained, [rows[i].matcher for i in constrained])
    tokens = [0] * len(rows)
    greedy = [i for i, r in enumerate(rows) if r.greedy]
    if greedy:
        best = torch.argmax(logits[greedy], dim=-1).tolist()
        for i, token in zip(greedy, best, strict=True):
            tokens[i] = token
    sampled = [i for i, r in enumerate(rows) if not r.greedy]
    if sampled:
        temps = torch.tensor([rows[i].temperature for i in sampled], dtype=logits.dtype)
        probs = torch.softmax(logits[sampled] / temps[:, None], dim=-1)
        for k, i in enumerate(sampled):
            tokens[i] = _sample(probs[k], rows[i])
    choices = []
    for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
        if row.counts is not None:
            row.counts[token] += 1
        choice = Choice(token)
        if i in logprobs:
            row_lp = logprobs[i]
            choice.logprob = float(row_lp[token])
            if row.top_logprobs:
                values, ids = torch.topk(row_lp, row.top_logprobs)
                choice.top = list(zip(ids.tolist(), values.tolist(), strict=True))
            else:
                choice.top = []
        choices.append(choice)
    return choices


def _logprobs(logits: Any, rows: list[Sampling]) -> dict[int, Any]:
    import torch

    asked = [i for i, r in enumerate(rows) if r.top_logprobs is not None]
    if not asked:
        return {}
    values = torch.log_softmax(logits[asked], dim=-1)
    return {i: values[k] for k, i in enumerate(asked)}


def _bias_and_penalise(logits: Any, rows: list[Sampling]) -> None:
    import torch

    for i, row in enumerate(rows):
        if row.logit_bias:
            ids = torch.tensor(list(row.logit_bias), dtype=torch.long)
            logits[i, ids] += torch.tensor(list(row.logit_bias.values()), dtype=logits.dtype)
        if row.frequency_penalty or row.presence_penalty:
            if row.counts is None:
                row.counts = torch.zeros(logits.shape[-1], dtype=logits.dtype)
            logits[i] -= row.frequency_penalty * row.counts
            logits[i] -= row.presence_penalty * (row.counts > 0).to(logits.dtype)


def _sample(probs: Any, row: Sampling) -> int:
    """Nucleus sampling from one row's probabilities with the row's own generator."""
    import torch

    if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
        return int(torch.argmax(probs))  # a degenerate distribution: take its mode
    if row.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < max(row.top_p, 1e-6)
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        return int(order[torch.multinomial(sorted_probs, 1, generator=row.rng())])
    return int(torch.multinomial(probs, 1, generator=row.rng()))
