"""The strategies, each as two hooks (the shape of Curator's ``prompt(row)`` / ``parse(row,
response)``): ``request(custom_id, text)`` is an item's batch line, ``parse(rows)`` turns a block
of joined rows (item + result columns) into verdict columns. ``extra_requests()`` are lines a
strategy adds to the day besides its items (the embedding strategy's anchors), ``prepare`` reads
what ``parse`` needs from the whole results file first (the anchors' vectors).

* `LlmJudge` — /v1/chat/completions with the policy prompt and a json_schema response format;
* `EmbeddingJudge` — /v1/embeddings, zero-shot against the policy's examples with calibrated
  per-category thresholds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_workflows.flows.moderation import embedding, llm
from batch_workflows.flows.moderation.calibration import Calibration
from batch_workflows.flows.moderation.taxonomy import Policy
from batch_workflows.parquet import open_parquet
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.results import SUCCEEDED

OK, UNPARSED, FAILED = "ok", "unparsed", "failed"
VERDICT_STATUSES = (OK, UNPARSED, FAILED)
LLM, EMBEDDING = "llm", "embedding"
STRATEGIES = (LLM, EMBEDDING)


@dataclass
class Judged:
    """Verdict columns of a block of rows (one entry per row)."""

    status: list[str] = field(default_factory=list)
    flagged: list[bool | None] = field(default_factory=list)
    categories: list[list[str] | None] = field(default_factory=list)
    rationale: list[str | None] = field(default_factory=list)
    reason: list[str | None] = field(default_factory=list)
    scores: np.ndarray | None = None  # items × categories (embedding), NaN where not ok

    def add(self, status: str, flagged: bool | None = None, categories: list[str] | None = None,
            rationale: str | None = None, reason: str | None = None) -> None:
        self.status.append(status)
        self.flagged.append(flagged)
        self.categories.append(categories)
        self.rationale.append(rationale)
        self.reason.append(reason)


class Judge(Protocol):
    strategy: str
    endpoint: str
    model: str
    policy: Policy

    def request(self, custom_id: str, text: str) -> dict[str, Any]: ...
    def extra_requests(self) -> Iterator[dict[str, Any]]: ...
    def params(self) -> dict[str, Any]: ...
    def prepare(self, results_path: str | Path) -> None: ...
    def parse(self, rows: pa.Table) -> Judged: ...


def failure_reason(status: str, code: str | None, message: str | None) -> str:
    """Why a request has no answer: its result status and the provider's error."""
    detail = ": ".join(p for p in (code, (message or "")[:200]) if p)
    return f"{status}: {detail}" if detail else status


class LlmJudge:
    """A chat model applies the policy prompt; its JSON answer is read strictly."""

    strategy, endpoint = LLM, CHAT

    def __init__(self, policy: Policy, model: str, *, max_tokens: int = llm.DEFAULT_MAX_TOKENS,
                 prompt_examples: int = llm.DEFAULT_PROMPT_EXAMPLES):
        self.policy, self.model, self.max_tokens = policy, model, max_tokens
        self.system = llm.policy_prompt(policy, prompt_examples)
        self._names = frozenset(policy.names)

    def request(self, custom_id: str, text: str) -> dict[str, Any]:
        return llm.chat_request(custom_id, text, self.policy, self.model, system=self.system,
                                max_tokens=self.max_tokens)

    def extra_requests(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def params(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "policy_version": self.policy.version}

    def prepare(self, results_path: str | Path) -> None:
        return None

    def parse(self, rows: pa.Table) -> Judged:
        out = Judged()
        for status, code, message, content, finish in zip(
            *(rows.column(c).to_pylist() for c in
              ("status", "error_code", "error_message", "content", "finish_reason")),
            strict=True,
        ):
            if status != SUCCEEDED:
                out.add(FAILED, reason=failure_reason(status, code, message))
                continue
            answer = llm.parse_answer(content, finish, self._names)
            if answer.status == llm.OK:
                out.add(OK, answer.flagged, list(answer.categories or ()), answer.rationale)
            else:
                out.add(UNPARSED, reason=answer.reason)
        return out


class EmbeddingJudge:
    """Cosine similarity to the policy's anchors, against calibrated per-category thresholds."""

    strategy, endpoint = EMBEDDING, EMBEDDINGS

    def __init__(self, policy: Policy, model: str, calibration: Calibration | None = None):
        self.policy, self.model, self.calibration = policy, model, calibration
        self.scorer: embedding.AnchorScorer | None = None
        self.anchor_failure: str | None = None

    def request(self, custom_id: str, text: str) -> dict[str, Any]:
        return embedding.embedding_request(custom_id, text, self.model)

    def extra_requests(self) -> Iterator[dict[str, Any]]:
        return embedding.anchor_requests(self.policy, self.model)

    def params(self) -> dict[str, Any]:
        # Thresholds change verdicts, not requests: recalibrating re-reads, never re-submits.
        return {"strategy": self.strategy, "policy_version": self.policy.version}

    def prepare(self, results_path: str | Path) -> None:
        """Read the anchors' vectors (the ``anchors:<n>`` rows) from the results file."""
        vectors, failures = read_anchor_vectors(results_path)
        if failures:
            self.anchor_failure = "the policy's anchors were not embedded: " + failures[0]
            return
        self.scorer = embedding.AnchorScorer(self.policy, vectors)

    def parse(self, rows: pa.Table) -> Judged:
        if self.calibration is None:
            raise ValueError("EmbeddingJudge.parse needs a calibration")
        out = Judged()
        n = rows.num_rows
        out.scores = np.full((n, len(self.policy.categories)), np.nan, dtype=np.float32)
        statuses = rows.column("status").to_pylist()
        has_vector = pc.fill_null(pc.greater(pc.list_value_length(rows.column("embedding")), 0),
                                  False).to_numpy(zero_copy_only=False)
        usable = np.array([s == SUCCEEDED for s in statuses], dtype=bool) & has_vector
        if self.scorer is not None and usable.any():
            vectors = np.asarray(rows.column("embedding").filter(pa.array(usable)).to_pylist(),
                                 dtype=np.float32)
            out.scores[usable] = self.scorer.scores(vectors)
        names = self.policy.names
        thresholds = self.calibration.vector(names)
        hits = embedding.categories_over(np.nan_to_num(out.scores, nan=-2.0), thresholds, names)
        codes, messages = rows.column("error_code").to_pylist(), rows.column("error_message")
        messages = messages.to_pylist()
        for i, status in enumerate(statuses):
            if status != SUCCEEDED:
                out.add(FAILED, reason=failure_reason(status, codes[i], messages[i]))
            elif self.scorer is None:
                out.add(FAILED, reason=self.anchor_failure or "no anchors in the results")
            elif not usable[i]:
                out.add(UNPARSED, reason="no embedding in the response")
            else:
                out.add(OK, bool(hits[i]), hits[i])
        return out


def read_anchor_vectors(results_path: str | Path) -> tuple[np.ndarray, list[str]]:
    """The anchors' vectors in anchor order, and why any anchor request did not succeed."""
    found: dict[int, list[list[float]]] = {}
    failures: list[str] = []
    columns = ["custom_id", "status", "error_code", "error_message", "embedding", "embeddings"]
    for batch in open_parquet(results_path).iter_batches(columns=columns, batch_size=8192):
        keep = pc.starts_with(batch.column("custom_id"), embedding.ANCHOR_PREFIX)
        for row in batch.filter(keep).to_pylist():
            n = int(row["custom_id"].removeprefix(embedding.ANCHOR_PREFIX))
            if row["status"] != SUCCEEDED:
                failures.append(f"{row['custom_id']}: " + failure_reason(
                    row["status"], row["error_code"], row["error_message"]))
                continue
            found[n] = row["embeddings"] or ([row["embedding"]] if row["embedding"] else [])
    if not found and not failures:
        failures.append("no anchors:<n> rows in the results")
    vectors = [v for n in sorted(found) for v in found[n]]
    return np.asarray(vectors, dtype=np.float32), failures


def make_judge(strategy: str, policy: Policy, model: str, *,
               calibration: Calibration | None = None, max_tokens: int = llm.DEFAULT_MAX_TOKENS,
               prompt_examples: int = llm.DEFAULT_PROMPT_EXAMPLES) -> Judge:
    """The judge of `strategy` (``llm`` or ``embedding``)."""
    if strategy == LLM:
        return LlmJudge(policy, model, max_tokens=max_tokens, prompt_examples=prompt_examples)
    if strategy == EMBEDDING:
        return EmbeddingJudge(policy, model, calibration)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
