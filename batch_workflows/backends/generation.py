"""Continuous batching for a transformers causal LM: one decoding loop, rows joining and leaving.

Rows (one per choice of a request) wait in prompt-length order. The loop keeps up to `max_rows`
of them in one left-padded batch with a KV cache: finished rows leave at once (the cache keeps
only live rows, and columns that only padding still uses are cut), and waiting rows are
prefilled and merged in at the start of each step group, so no forward pass is spent on a
finished row and the batch stays full.

The loop runs one step group per TurnLock turn: the model is used by one thread at a time, and a
call that arrives meanwhile (a real-time request) waits for at most one step group. should_stop
is asked between step groups; rows not finished by then are left unfinished.

The cache is kv_cache's (buffers with spare columns, rows that can leave and join). A model that
builds a cache of its own kind (sliding windows, ...) still works: its rows ride along until
their whole batch is done, as in `model.generate`. A long prompt prefix that rows of one run
share (a batch's common system prompt) is prefilled once (prefixes.SharedPrefixes).
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batch_workflows.backends import kv_cache
from batch_workflows.backends.base import StopCheck, TurnLock, never
from batch_workflows.backends.prefixes import MIN_SHARED_TOKENS, SharedPrefixes
from batch_workflows.backends.sampling import Choice, Sampling, choose

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One sequence to generate, and what came out of it."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)  # kept only when logprobs are asked
    text: str | None = None
    finish_reason: str | None = None  # "stop" | "length"; None while running or when stopped

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass
class _Batch:
    """The rows in the model now, with their cache; every tensor's first dimension is a row."""

    rows: list[Row]
    cache: Any
    mask: Any  # [rows, cache length + 1 once stepped]: 1 for real tokens, 0 for padding
    positions: Any  # [rows]: position id of each row's next token
    next_ids: Any  # [rows]: the token each row feeds next


class Generator:
    """The decoding loop for one model; `generate` is safe to call from several threads."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        eos_ids: set[int],
        device: str,
        grammars: Any = None,
        max_rows: int = 32,
        step_group: int = 8,
        # Bounds on the memory a batch takes beyond the model: the KV cache, and the padded
        # tokens one prefill computes. bench/chat.py with SmolLM2 in float32: at 320 MB the
        # server peaks at 1,480 MB (target < 1.5 GB) and reaches 0.86 of model.generate's
        # tokens/s; at 256 MB, 1,429 MB and 0.81 (fewer rows of long prompts fit).
        kv_budget_bytes: int = 320 << 20,
        max_prefill_tokens: int = 2048,
        min_shared_prefix: int | None = MIN_SHARED_TOKENS,  # None: every row prefilled whole
    ):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.eos_ids, self.grammars = eos_ids, grammars
        self.max_rows, self.step_group = max_rows, step_group
        self.kv_budget_bytes, self.max_prefill_tokens = kv_budget_bytes, max_prefill_tokens
        self.min_shared_prefix = min_shared_prefix
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.turns = TurnLock()
        self._kv_bytes_per_token = _kv_bytes_per_token(model)
        params = inspect.signature(model.forward).parameters
        # transformers renamed `past_key_values` to `cache`; speak whichever this model takes.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def generate(
        self,
        prepare: Callable[[], list[Row]],
        should_stop: StopCheck = never,
        steps_per_turn: int | None = None,
        after_turn: Callable[[], None] | None = None,
    ) -> list[Row]:
        """Run prepare() (tokenizing, in the first turn: the tokenizer is not thread-safe) and
        generate its rows; returns them. steps_per_turn defaults to one step group.
        after_turn() runs after each turn, outside it (the caller looks for finished rows)."""
        steps = steps_per_turn or self.step_group
        rows: list[Row] = []
        waiting: deque[Row] = deque()
        shared = SharedPrefixes(())
        batch: _Batch | None = None
        first = True
        while first or waiting or batch is not None:
            if should_stop():
                break
            with self.turns.turn():
                if first:
                    rows = prepare()
                    waiting.extend(sorted((r for r in rows if not r.done),
                                          key=lambda r: len(r.prompt_ids)))
                    shared = SharedPrefixes(waiting, self.min_shared_prefix)
                    first = False
                batch = self._admit(batch, waiting, shared)
                for _ in range(steps):
                    if batch is None:
                        break
                    batch = self._step(batch)
            if after_turn is not None:
                after_turn()
        return rows

    # -- admission -----------------------------------------------------------------------------

    def _admit(self, batch: _Batch | None, waiting: deque[Row],
               shared: SharedPrefixes) -> _Batch | None:
        """Prefill waiting rows into the free places (within the row, memory and prefill
        limits) and merge them into the batch."""
        if batch is not None and not kv_cache.reshapable(batch.cache):
            return batch  # this cache cannot take rows in: wait until the batch is done
        live = batch.rows if batch is not None else []
        # The cache ends no wider than its longest row's prompt + max_tokens (+ spare columns).
        need = max((len(r.prompt_ids) + r.max_tokens + kv_cache.CHUNK for r in live), default=0)
        chosen: list[Row] = []
        while waiting and len(live) + len(chosen) < self.max_rows:
            row = waiting[0]
            longest = max(need, len(row.prompt_ids) + row.max_tokens + kv_cache.CHUNK)
            rows_after = len(live) + len(chosen) + 1
            # Tokens the prefill computes per row: a shared prefix's are copied (at most one
            # one-row forward computes it for all of them).
            width = max(len(r.prompt_ids) - shared.length(r) for r in [*chosen, row])
            over_memory = rows_after * longest * self._kv_bytes_per_token > self.kv_budget_bytes
            over_prefill = (len(chosen) + 1) * width > self.max_prefill_tokens
            if (over_memory or over_prefill) and (live or chosen):
                break  # always take one row into an empty batch, whatever its size
            chosen.append(waiting.popleft())
            need = longest
        if not chosen:
            return batch
        fresh = self._prefill(chosen, shared, batch)
        if batch is None:
            return fresh
        if fresh is None:
            return batch
        return _merge(batch, fresh)  # batch is reshapable (checked above), so fresh is too

    def _prefill(self, rows: list[Row], shared: SharedPrefixes,
                 batch: _Batch | None) -> _Batch | None:
        """One batch of `rows`: those sharing a prefix start from a copy of its columns."""
        prefixes = {}
        for group in dict.fromkeys(map(shared.group, rows)):
            if group is None:
                continue
            columns = self._prefix_in(batch, shared, group)
            if columns is None:
                columns = self._prefill_prefix(shared.prefix(group))
            if columns is None:  # this model's cache is not kv_cache's: no copying rows
                shared.disable()
                break
            prefixes[group] = columns
        groups: dict[int | None, list[Row]] = {}
        for row in rows:
            groups.setdefault(shared.group(row), []).append(row)
        out: _Batch | None = None
        for group, members in groups.items():
            fresh = self._prefill_rows(members, None if group is None else prefixes[group])
            if fresh is not None:
                out = fresh if out is None else _merge(out, fresh)
        return out

    @staticmethod
    def _prefix_in(batch: _Batch | None, shared: SharedPrefixes, group: int) -> Any | None:
        """The group's prefix columns from a row of it in the batch: its first real columns
        (rows are left-padded, and a shared prefix is copied in ahead of any padding)."""
        if batch is None:
            return None
        for i, row in enumerate(batch.rows):
            if shared.group(row) == group:
                start = int(batch.mask[i].argmax())  # the row's first real column
                return kv_cache.row_columns(batch.cache, i, start, len(shared.prefix(group)))
        return None

    def _prefill_prefix(self, ids: list[int]) -> Any | None:
        """A shared prefix's columns, run through the model as one row (None when this model's
        cache is not kv_cache's, so it cannot be copied into rows)."""
        import torch

        t = torch.tensor([ids], dtype=torch.long, device=self.device)
        _, cache = self._forward(t, torch.ones_like(t),
                                 torch.arange(len(ids), device=self.device)[None],
                                 kv_cache.new_cache())
        log.debug("prefilled a shared prefix of %d tokens", len(ids))
        if not kv_cache.reshapable(cache):
            return None
        return kv_cache.row_columns(cache, 0, 0, len(ids))

    def _prefill_rows(self, rows: list[Row], prefix: Any | None) -> _Batch | None:
        """Prefill rows into a new batch, left-padded; with a prefix (each layer's keys and
        values of the first tokens every row shares), only each row's tokens after it."""
        import torch

        skip = 0 if prefix is None else prefix[0][0].shape[-2]
        tails = [r.prompt_ids[skip:] for r in rows]
        width = max(len(t) for t in tails)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, tail in enumerate(tails):
            ids[i, width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
            mask[i, width - len(tail) :] = 1
        if prefix is None:
            cache = kv_cache.new_cache()
        else:  # [prefix | padding | tail]: the padding is masked, the positions run on
            cache = kv_cache.repeat_rows(prefix, len(rows), spare=width + kv_cache.CHUNK)
            mask = torch.cat([torch.ones((len(rows), skip), dtype=torch.long), mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, skip:]
        ids, mask, positions = (t.to(self.device) for t in (ids, mask, positions))
        logits, cache = self._forward(ids, mask, positions, cache)
        batch = _Batch(rows, cache, mask, mask.sum(-1), None)
        self._advance(batch, logits)
        return self._drop_done(batch)

    # -- decoding ------------------------------------------------------------------------------

    def _step(self, batch: _Batch) -> _Batch | None:
        import torch

        batch.mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
        logits, batch.cache = self._forward(batch.next_ids[:, None], batch.mask,
                                            batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        self._advance(batch, logits)
        return self._drop_done(batch)

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> tuple[Any, Any]:
        """One forward pass that fills `cache`: (each row's last logits, the cache)."""
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, **{self._cache_arg: cache}, **self._keep_last)
        return out.logits[:, -1, :], getattr(out, self._cache_arg)

    def _advance(self, batch: _Batch, logits: Any) -> None:
        """Pick every live row's next token and settle the rows that finished."""
        import torch

        live = [i for i, r in enumerate(batch.rows) if not r.done]
        picked = choose(logits[live].float().cpu(), [batch.rows[i].sampling for i in live],
                        self.grammars)
        next_ids = [self.pad_id] * len(batch.rows)
        for i, choice in zip(live, picked, strict=True):
            next_ids[i] = choice.token
            self._take(batch.rows[i], choice)
        batch.next_ids = torch.tensor(next_ids, dtype=torch.long, device=self.device)

    def _take(self, row: Row, choice: Choice) -> None:
        matcher = row.sampling.matcher
        if matcher is not None and not matcher.accept_token(choice.token):
            log.warning("the grammar rejected token %d it allowed; ending the row", choice.token)
            row.finish_reason = "stop"
        elif choice.token in self.eos_ids:
            row.finish_reason = "stop"  # the end-of-turn token is not part of the answer
        else:
            row.out.append(choice.token)
            if row.sampling.top_logprobs is not None:
                row.choices.append(choice)
            if row.stop and self._cut_at_stop(row):
                row.finish_reason = "stop"
            elif matcher is not None and matcher.is_terminated():
                row.finish_reason = "stop"
            elif len(row.out) >= row.max_tokens:
                row.finish_reason = "length"
        if row.done and row.text is None:
            row.text = self.tokenizer.decode(row.out, skip_special_tokens=True)

    def _cut_at_stop(self, row: Row) -> bool:
        """Cut the text at the first stop string; True when one appeared."""
        text = self.tokenizer.decode(row.out, skip_special_tokens=True)
        cuts = [text.find(s) for s in row.stop if s in text]
        if not cuts:
            return False
        row.text = text[: min(cuts)]
        return True

    def _drop_done(self, batch: _Batch) -> _Batch | None:
        """The batch without its finished rows (None when none is left)."""
        import torch

        keep = [i for i, r in enumerate(batch.rows) if not r.done]
        if not keep:
            return None
        if len(keep) == len(batch.rows) or not kv_cache.reshapable(batch.cache):
            return batch
        index = torch.tensor(keep, dtype=torch.long, device=batch.mask.device)
        kv_cache.keep_rows(batch.cache, index)
        mask = batch.mask[index]
        lead = int(mask.any(0).long().argmax())  # columns only padding uses: cut them
        if lead:
            kv_cache.cut_left(batch.cache, lead)
            mask = mask[:, lead:]
        return _Batch([batch.rows[i] for i in keep], batch.cache, mask,
                      batch.positions[index], batch.next_ids[index])


def _merge(a: _Batch, b: _Batch) -> _Batch:
    """One batch of a's rows then b's, the shorter left-padded to the longer."""
    import torch
    import torch.nn.functional as F

    width = max(a.mask.shape[1], b.mask.shape[1])
    kv_cache.merge(a.cache, b.cache)
    masks = [F.pad(m, (width - m.shape[1], 0)) for m in (a.mask, b.mask)]
    return _Batch(a.rows + b.rows, a.cache, torch.cat(masks),
                  torch.cat([a.positions, b.positions]), torch.cat([a.next_ids, b.next_ids]))


def _kv_bytes_per_token(model: Any) -> int:
    """KV-cache bytes one token takes in one row (keys and values of every layer)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    layers = int(cfg.num_hidden_layers)
    itemsize = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * itemsize
