"""`/v1/chat/completions` with transformers: any local causal LM, batched generation.

Generation runs its own decoding loop over a left-padded batch with a KV cache so that every row
keeps its own temperature, top_p, max_tokens, stop strings and seed: a request with a seed gets the
same text whatever else shares its batch.

Chat template: the tokenizer's own; when it has none, a plain fallback renders each message as
"{role}: {content}\\n" and ends with "assistant:".
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_workflows.backends.base import (
    BackendResult,
    StopCheck,
    check_common,
    error_result,
    invalid_request,
    never,
    server_error,
)
from batch_workflows.profiles import CHAT

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # when the request sets neither max_tokens nor max_completion_tokens
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_KNOWN_PARAMS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
    "stop", "n", "stream", "user", "metadata", "store", "logprobs", "presence_penalty",
    "frequency_penalty", "service_tier",
}  # fmt: skip


@dataclass
class _Job:
    """One parsed request."""

    index: int
    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    out: list[int] = field(default_factory=list)
    text: str | None = None
    finish_reason: str | None = None


def _fallback_template(messages: list[dict[str, str]]) -> str:
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def _number(body: dict, name: str, default: float, lo: float, hi: float) -> float | BackendResult:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not (lo <= value <= hi):
        return invalid_request(
            f"'{name}' must be a number between {lo} and {hi} (got {value!r}).", param=name
        )
    return float(value)


class ChatBackend:
    """Serves one local transformers causal LM; it loads on the first run()."""

    endpoint = CHAT

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        model_id: str | None = None,
        *,
        device: str | None = None,
        max_batch: int = 16,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_ids = [model_id or self.model_path.name]
        self.device = device
        self.max_batch = max_batch
        self.default_max_tokens = default_max_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self._context: int | None = None
        self._lock = threading.Lock()  # loading, and one generation loop at a time

    # -- model ---------------------------------------------------------------------------------

    def load(self) -> tuple[Any, Any]:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(str(self.model_path)).to(device)
            model.eval()
            self._context = getattr(model.config, "max_position_embeddings", None)
            self._tokenizer, self._model, self.device = tokenizer, model, device
            log.info("loaded chat model %s on %s", self.model_path, device)
        return self._model, self._tokenizer

    def close(self) -> None:
        with self._lock:
            self._model = self._tokenizer = None

    # -- requests ------------------------------------------------------------------------------

    def run(self, bodies: list[dict], should_stop: StopCheck = never) -> list[BackendResult | None]:
        with self._lock:
            try:
                self.load()
            except Exception as exc:
                log.exception("cannot load chat model %s", self.model_path)
                msg = f"Chat model could not be loaded: {type(exc).__name__}"
                return [server_error(msg) for _ in bodies]
            results: list[BackendResult | None] = [None] * len(bodies)
            jobs: list[_Job] = []
            for i, body in enumerate(bodies):
                parsed = self._parse(i, body)
                if isinstance(parsed, BackendResult):
                    results[i] = parsed
                else:
                    jobs.append(parsed)
            # Similar prompt lengths share a forward batch: less padding.
            jobs.sort(key=lambda j: len(j.prompt_ids))
            for start in range(0, len(jobs), self.max_batch):
                if should_stop():
                    break  # the rest stay None
                group = jobs[start : start + self.max_batch]
                try:
                    self._generate(group)
                except Exception as exc:
                    log.exception("generation failed for %d requests", len(group))
                    for job in group:
                        results[job.index] = server_error(
                            f"Generation failed: {type(exc).__name__}: {exc}"
                        )
                    continue
                for job in group:
                    results[job.index] = self._response(job)
            return results

    def _parse(self, index: int, body: Any) -> _Job | BackendResult:
        model = check_common(body, _KNOWN_PARAMS, self.model_ids)
        if isinstance(model, BackendResult):
            return model
        if body.get("n") not in (None, 1):
            return invalid_request(
                "Only n=1 is supported by this server.", param="n", code="unsupported_value"
            )
        if body.get("stream"):
            return invalid_request(
                "stream=true is not supported here.", param="stream", code="unsupported_value"
            )
        if body.get("logprobs"):
            return invalid_request(
                "logprobs are not supported here.", param="logprobs", code="unsupported_value"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            if body.get(name) not in (None, 0, 0.0):
                return invalid_request(
                    f"'{name}' is not supported here.", param=name, code="unsupported_value"
                )
        messages = _messages(body.get("messages"))
        if isinstance(messages, BackendResult):
            return messages
        temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
        if isinstance(temperature, BackendResult):
            return temperature
        top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
        if isinstance(top_p, BackendResult):
            return top_p
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        asked = max_tokens is not None
        if not asked:
            max_tokens = self.default_max_tokens
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return invalid_request(
                f"'{param}' must be a positive integer (got {max_tokens!r}).", param=param
            )
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            return invalid_request(f"'seed' must be an integer (got {seed!r}).", param="seed")
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        if (
            not isinstance(stop, list)
            or len(stop) > 4
            or not all(isinstance(s, str) and s for s in stop)
        ):
            return invalid_request(
                "'stop' must be a string or a list of up to 4 non-empty strings.", param="stop"
            )

        prompt_ids = self._encode_prompt(messages)
        if not asked and self._context is not None:
            # No limit asked: generate up to the default, or as far as the window allows.
            max_tokens = max(1, min(max_tokens, self._context - len(prompt_ids)))
        if self._context is not None and len(prompt_ids) + max_tokens > self._context:
            return error_result(
                400,
                f"This model's maximum context length is {self._context} tokens. However, you requested "
                f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the messages, "
                f"{max_tokens} in the completion).",
                param="messages",
                code="context_length_exceeded",
            )
        return _Job(index, model, prompt_ids, max_tokens, temperature, top_p, seed, stop)

    def _encode_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(_fallback_template(messages), add_special_tokens=True)["input_ids"])

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, jobs: list[_Job]) -> None:
        """Decode all jobs together; fills job.out, job.text and job.finish_reason."""
        import torch

        model, tok = self._model, self._tokenizer
        eos = _eos_ids(model, tok)
        pad = tok.pad_token_id
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            n = len(job.prompt_ids)
            ids[row, width - n :] = torch.tensor(job.prompt_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [_generator(job.seed) for job in jobs]
        past = None
        step_ids = ids
        step_pos = positions
        # transformers renamed `past_key_values` to `cache`; speak whichever this model takes.
        params = inspect.signature(model.forward).parameters
        cache_arg = "cache" if "cache" in params else "past_key_values"
        extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        with torch.inference_mode():
            for _ in range(max(j.max_tokens for j in jobs)):
                out = model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_pos,
                    use_cache=True,
                    **{cache_arg: past},
                    **extra,
                )
                past = getattr(out, cache_arg, None)
                logits = out.logits[:, -1, :].float().cpu()
                next_ids = []
                for row, job in enumerate(jobs):
                    if job.finish_reason is not None:
                        next_ids.append(pad)
                        continue
                    token = _pick(logits[row], job, generators[row])
                    next_ids.append(token)
                    if token in eos:
                        job.finish_reason = "stop"
                        continue
                    job.out.append(token)
                    if job.stop and self._hit_stop(job):
                        continue
                    if len(job.out) >= job.max_tokens:
                        job.finish_reason = "length"
                if all(j.finish_reason is not None for j in jobs):
                    break
                step_ids = torch.tensor(next_ids, dtype=torch.long, device=self.device)[:, None]
                mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
                step_pos = step_pos[:, -1:] + 1
        for job in jobs:
            if job.text is None:
                job.text = tok.decode(job.out, skip_special_tokens=True)
            if job.finish_reason is None:
                job.finish_reason = "length"

    def _hit_stop(self, job: _Job) -> bool:
        """Cut the text at the first stop string; True when one appeared."""
        text = self._tokenizer.decode(job.out, skip_special_tokens=True)
        cuts = [text.find(s) for s in job.stop if s in text]
        if not cuts:
            return False
        job.text = text[: min(cuts)]
        job.finish_reason = "stop"
        return True

    def _response(self, job: _Job) -> BackendResult:
        prompt, completion = len(job.prompt_ids), len(job.out)
        return BackendResult(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": job.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": job.text, "refusal": None},
                        "finish_reason": job.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )


def _messages(raw: Any) -> list[dict[str, str]] | BackendResult:
    """Validate `messages`; content parts of type text are joined into one string."""
    if not isinstance(raw, list) or not raw:
        return invalid_request(
            "'messages' must be a non-empty array of messages.", param="messages"
        )
    out = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            return invalid_request(
                f"'{where}' must be an object with a role among {sorted(_ROLES)}.",
                param=f"{where}.role",
            )
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    return invalid_request(
                        f"'{where}.content' parts must be of type 'text' here.",
                        param=f"{where}.content",
                    )
                parts.append(part["text"])
            content = "".join(parts)
        elif content is None and msg["role"] == "assistant":
            content = ""
        if not isinstance(content, str):
            return invalid_request(f"'{where}.content' must be a string.", param=f"{where}.content")
        role = "system" if msg["role"] == "developer" else msg["role"]
        out.append({"role": role, "content": content})
    return out


def _eos_ids(model: Any, tok: Any) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tok.eos_token_id is not None:
        found.add(tok.eos_token_id)
    return found


def _generator(seed: int | None) -> Any:
    import torch

    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed % (2**63))
    return gen


def _pick(logits: Any, job: _Job, gen: Any) -> int:
    """Greedy at temperature 0, else nucleus sampling with the row's own generator."""
    import torch

    if job.temperature < 1e-4:  # 0 means greedy; tiny values would overflow the softmax
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / job.temperature, dim=-1)
    if not math.isfinite(float(probs.sum())):
        return int(torch.argmax(logits))
    if job.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < max(job.top_p, 1e-6)
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        return int(order[torch.multinomial(sorted_probs, 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))
