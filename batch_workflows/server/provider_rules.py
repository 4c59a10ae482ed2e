"""Provider behaviours the engine emulates at validation, off by default (``batch-workflows
serve --enqueued-token-limit N --reject-unknown-models``), so lifecycle tests meet them for real.

* **Enqueued-token quota** (OpenAI): the input tokens of a model's validated, unfinished batches
  may not exceed a limit; a batch that would go over fails at validation with
  ``token_limit_exceeded`` and OpenAI's message. Tokens are estimated as the lifecycle's budget
  does (``pricing.estimate_tokens``), so a client that admits by that estimate never trips it.
* **Unknown model** (OpenAI): a file naming a model the server does not serve fails as a whole
  at validation with ``model_not_found`` and the line, instead of one error line per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from batch_workflows.pricing import estimate_input_tokens

# Statuses whose input tokens count against the quota: validated and not finished.
ENQUEUED = ("in_progress", "finalizing")


def token_limit_error(model: str, organization: str, limit: int) -> dict[str, Any]:
    """OpenAI's ``errors.data[]`` entry for a batch over the enqueued-token quota."""
    return {"code": "token_limit_exceeded", "param": None, "line": None,
            "message": f"Enqueued token limit reached for {model} in organization "
                       f"{organization}. Limit: {limit:,} enqueued tokens. Please try again "
                       "once some in_progress batches have been completed."}


def model_not_found_error(model: str, line: int | None) -> dict[str, Any]:
    """OpenAI's ``errors.data[]`` entry for a file naming a model it does not serve."""
    return {"code": "model_not_found", "param": "body.model", "line": line,
            "message": f"The model `{model}` does not exist or you do not have access to it."}


def first_line_of_model(path: Path, model: str) -> int | None:
    """The 1-based line of the first request naming `model`."""
    with open(path, "rb") as handle:
        for no, raw in enumerate(handle, 1):
            raw = raw.removeprefix(b"\xef\xbb\xbf").strip()
            if raw and (orjson.loads(raw).get("body") or {}).get("model") == model:
                return no
    return None


class TokenQuota:
    """Admission of validated batches under an enqueued-token limit per model.

    `admit` is check-and-act under one lock, so two workers validating at once cannot both
    take the last room. Token counts of admitted batches are cached by id (recomputed from
    their input files after a restart).
    """

    def __init__(self, limit: int, organization: str):
        self.limit, self.organization = limit, organization
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}

    def tokens(self, batch_id: str, path: Path) -> int:
        if batch_id not in self._tokens:
            self._tokens[batch_id] = estimate_input_tokens(path)
        return self._tokens[batch_id]

    def admit(self, batch: dict[str, Any], model: str, path: Path,
              enqueued: Callable[[], Iterable[dict[str, Any]]],
              input_path: Callable[[dict[str, Any]], Path],
              start: Callable[[], None]) -> dict[str, Any] | None:
        """Run `start` (the move to in_progress) if the batch fits; else the error to fail it with.

        `enqueued()` lists the server's active batches; those of `model` in ``ENQUEUED`` count.
        """
        with self._lock:
            active = list(enqueued())
            live = {b["id"] for b in active}
            for gone in [bid for bid in self._tokens if bid not in live]:
                del self._tokens[gone]  # finished or cancelled: no longer enqueued
            held = sum(self.tokens(b["id"], input_path(b)) for b in active
                       if b["status"] in ENQUEUED and b["model"] == model and b["id"] != batch["id"])
            if held + self.tokens(batch["id"], path) > self.limit:
                self._tokens.pop(batch["id"], None)
                return token_limit_error(model, self.organization, self.limit)
            start()
            return None
