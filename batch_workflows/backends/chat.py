"""`/v1/chat/completions` with transformers: SmolLM2-135M-Instruct by default, or any local
causal LM (a transformers folder or a GGUF file), continuously batched.

Requests are parsed by chat_request (the whole published CreateChatCompletionRequest), each
choice becomes a generation Row with its own temperature, top_p, max_tokens, stop strings and
seed, structured outputs get an xgrammar matcher, and generation.Generator decodes all rows of a
run() together, one step group per turn of the model (DESIGN.md §5).

Chat template: the model's own (a GGUF file carries it); when it has none, a plain fallback
renders each message as "{role}: {content}\\n" and ends with "assistant:".
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from batch_workflows.backends.base import (
    BackendResult,
    ResultSink,
    StopCheck,
    error_result,
    invalid_request,
    never,
    server_error,
)
from batch_workflows.backends.chat_request import ChatRequest, parse_chat_request
from batch_workflows.backends.generation import Generator, Row
from batch_workflows.backends.gguf import load_gguf
from batch_workflows.backends.prefixes import MIN_SHARED_TOKENS
from batch_workflows.backends.sampling import Sampling
from batch_workflows.backends.smollm2 import INSTALL_HINT, MODEL_ID, default_chat_model_path
from batch_workflows.backends.structured import GrammarError
from batch_workflows.profiles import CHAT

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # when the request sets neither max_tokens nor max_completion_tokens
DEFAULT_MODEL_IDS = [MODEL_ID, f"HuggingFaceTB/{MODEL_ID}"]
# A run() of one request (a real-time call) keeps the model for this many steps per turn: it is
# done in one turn unless it is long, while a batch gives the model up after every step group.
REALTIME_STEPS_PER_TURN = 512


class ChatBackend:
    """Serves one local causal LM; it loads on the first run()."""

    endpoint = CHAT

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_id: str | None = None,
        *,
        device: str | None = None,
        dtype: str = "float32",
        max_batch: int = 256,
        max_rows: int = 32,
        step_group: int = 8,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        min_shared_prefix: int | None = MIN_SHARED_TOKENS,
    ) -> None:
        if model_path is None:
            found = default_chat_model_path()
            self.model_path = found or Path(f"<{MODEL_ID} not installed: {INSTALL_HINT}>")
            self.model_ids = [model_id] if model_id else list(DEFAULT_MODEL_IDS)
        else:
            self.model_path = Path(model_path)
            name = self.model_path.stem if _is_gguf(self.model_path) else self.model_path.name
            self.model_ids = [model_id or name]
        self.device = device
        # float32: a seeded answer is then the same whatever shares its batch. bfloat16 is twice
        # as fast on a CPU with native bfloat16 and takes half the memory, but its rounding
        # makes a row's logits depend on the other rows enough to change sampled tokens.
        self.dtype = dtype
        # Requests per run(): one run keeps up to max_rows rows in the model and refills them as
        # rows finish, so a large run wastes nothing at its end but its last few steps.
        self.max_batch = max_batch
        self.max_rows, self.step_group = max_rows, step_group
        self.default_max_tokens = default_max_tokens
        self.min_shared_prefix = min_shared_prefix  # None: no prefix sharing (bench/shared_prefix)
        self._model: Any = None
        self._tokenizer: Any = None
        self._generator: Generator | None = None
        self._grammars: Any = None
        self._token_bytes: list[bytes] = []
        self._context: int | None = None
        self._lock = threading.Lock()  # loading

    # -- model ---------------------------------------------------------------------------------

    def load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                self._load()
        return self._model, self._tokenizer

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from batch_workflows.backends.structured import Grammars

        if not self.model_path.exists():
            raise FileNotFoundError(f"chat model not found: {self.model_path}")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, self.dtype)
        if _is_gguf(self.model_path):  # transformers dequantizes GGUF into a torch model
            model, tokenizer = load_gguf(self.model_path, dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
            model = AutoModelForCausalLM.from_pretrained(str(self.model_path), dtype=dtype)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = model.to(device)
        model.eval()
        eos = _eos_ids(model, tokenizer)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        grammars = Grammars(tokenizer, vocab, sorted(eos))
        self._context = getattr(model.config, "max_position_embeddings", None)
        self._generator = Generator(model, tokenizer, eos_ids=eos, device=device,
                                    grammars=grammars, max_rows=self.max_rows,
                                    step_group=self.step_group,
                                    min_shared_prefix=self.min_shared_prefix)
        self._grammars, self._token_bytes = grammars, grammars.token_bytes()
        self._tokenizer, self._model, self.device = tokenizer, model, device
        log.info("loaded chat model %s on %s", self.model_path, device)

    def close(self) -> None:
        with self._lock:
            self._model = self._tokenizer = self._generator = self._grammars = None

    # -- requests ------------------------------------------------------------------------------

    def run(self, bodies: list[dict], should_stop: StopCheck = never,
            on_result: ResultSink | None = None) -> list[BackendResult | None]:
        try:
            self.load()
        except Exception as exc:  # a broken or missing model fails every request, not the server
            log.exception("cannot load chat model %s", self.model_path)
            msg = f"Chat model could not be loaded: {type(exc).__name__}: {exc}"
            return [server_error(msg) for _ in bodies]
        assert self._generator is not None
        results: list[BackendResult | None] = [None] * len(bodies)
        owners: list[tuple[int, ChatRequest, list[Row]]] = []

        def prepare() -> list[Row]:  # in the model's first turn: it tokenizes
            rows: list[Row] = []
            for i, body in enumerate(bodies):
                job = self._rows_for(body)
                if isinstance(job, BackendResult):
                    results[i] = job
                else:
                    owners.append((i, *job))
                    rows.extend(job[1])
            return rows

        reported: set[int] = set()

        def settle() -> None:  # after every turn: answer the requests whose rows are all done
            for i, request, rows in owners:
                if results[i] is None and all(r.done for r in rows):
                    results[i] = self._response(request, rows)
            if on_result is not None:
                for i, result in enumerate(results):
                    if result is not None and i not in reported:
                        reported.add(i)
                        on_result(i, result)

        steps = REALTIME_STEPS_PER_TURN if len(bodies) == 1 else None
        try:
            self._generator.generate(prepare, should_stop, steps, after_turn=settle)
        except Exception as exc:  # a failed forward fails its run's requests, not the worker
            log.exception("generation failed for %d requests", len(bodies))
            for i, _, rows in owners:
                if not all(r.done for r in rows):
                    results[i] = server_error(f"Generation failed: {type(exc).__name__}: {exc}")
        settle()
        return results

    def _rows_for(self, body: Any) -> tuple[ChatRequest, list[Row]] | BackendResult:
        """The request's rows (one per choice), or the error result to answer with."""
        request = parse_chat_request(body, self.model_ids)
        if isinstance(request, BackendResult):
            return request
        vocab = len(self._token_bytes)
        bad = [t for t in request.logit_bias if t >= vocab]
        if bad:
            return invalid_request(f"'logit_bias' has token id {bad[0]}, outside this model's "
                                   f"vocabulary of {vocab}.", param="logit_bias")
        prompt_ids = self._encode_prompt(request.messages)
        max_tokens = request.max_tokens
        if max_tokens is None:
            # No limit asked: generate up to the default, or as far as the window allows.
            max_tokens = self.default_max_tokens
            if self._context is not None:
                max_tokens = max(1, min(max_tokens, self._context - len(prompt_ids)))
        if self._context is not None and len(prompt_ids) + max_tokens > self._context:
            return error_result(
                400,
                f"This model's maximum context length is {self._context} tokens. However, you "
                f"requested {len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the "
                f"messages, {max_tokens} in the completion).",
                param="messages",
                code="context_length_exceeded",
            )
        grammar = None
        if request.response_format is not None:
            try:
                grammar = self._grammars.compile(request.response_format)
            except GrammarError as exc:
                return invalid_request(
                    f"Invalid schema for response_format: {exc}", param="response_format",
                    code="invalid_json_schema",
                )
        rows = []
        for k in range(request.n):
            sampling = Sampling(
                temperature=request.temperature,
                top_p=request.top_p,
                # Choice k of a seeded request has its own stream, the same on every run.
                seed=None if request.seed is None else request.seed + k,
                logit_bias=request.logit_bias,
                frequency_penalty=request.frequency_penalty,
                presence_penalty=request.presence_penalty,
                matcher=None if grammar is None else self._grammars.matcher(grammar),
                top_logprobs=request.top_logprobs if request.logprobs else None,
            )
            rows.append(Row(list(prompt_ids), max_tokens, sampling, list(request.stop)))
        return request, rows

    def _encode_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(_fallback_template(messages), add_special_tokens=True)["input_ids"])

    def _response(self, request: ChatRequest, rows: list[Row]) -> BackendResult:
        prompt = len(rows[0].prompt_ids)
        completion = sum(len(r.out) for r in rows)
        choices = [
            {
                "index": k,
                "message": {"role": "assistant", "content": row.text, "refusal": None},
                "finish_reason": row.finish_reason,
                "logprobs": self._logprobs(row) if request.logprobs else None,
            }
            for k, row in enumerate(rows)
        ]
        return BackendResult(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )

    def _logprobs(self, row: Row) -> dict:
        """OpenAI's ChatCompletion logprobs: one entry per generated token of the answer."""

        def entry(token: int, logprob: float) -> dict:
            raw = self._token_bytes[token] if token < len(self._token_bytes) else b""
            return {"token": raw.decode("utf-8", errors="replace"),
                    "logprob": max(logprob, -9999.0), "bytes": list(raw)}

        content = [
            {**entry(c.token, c.logprob), "top_logprobs": [entry(t, lp) for t, lp in c.top or []]}
            for c in row.choices
        ]
        return {"content": content, "refusal": None}


def _is_gguf(path: Path) -> bool:
    return path.suffix.lower() == ".gguf"


def _fallback_template(messages: list[dict[str, str]]) -> str:
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def _eos_ids(model: Any, tok: Any) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tok.eos_token_id is not None:
        found.add(tok.eos_token_id)
    return found
