"""What every backend offers the server: one result per request body, never an exception."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Asked between units of work (an encode window, a generation group, an upstream send): True
# means the batch was cancelled or expired, so the backend should stop early.
StopCheck = Callable[[], bool]


def never() -> bool:
    return False


# Told of a request as soon as it is finished, before run() returns: its index in `bodies` and
# its result (the same one run() returns for it). The server commits and counts finished
# requests from it while the rest of a long run is still generating.
ResultSink = Callable[[int, "BackendResult"], None]


@dataclass
class BackendResult:
    """One request's outcome: an OpenAI response object on 200, an error envelope otherwise."""

    status_code: int
    body: dict

    @property
    def ok(self) -> bool:
        return self.status_code == 200


@runtime_checkable
class Backend(Protocol):
    """Runs request bodies for one endpoint: a local model or an upstream real-time server.

    run() is called from several threads at once (batch workers and real-time requests); each
    backend serialises what must not run concurrently, as finely as it can."""

    endpoint: str
    model_ids: list[str]
    max_batch: int  # preferred number of bodies per run() call

    def run(self, bodies: list[dict], should_stop: StopCheck = never,
            on_result: ResultSink | None = None) -> list[BackendResult | None]:
        """One result per body, same order; per-request problems become results.

        Once should_stop() is True the backend may stop early: a body it did not finish gets
        None (its work is not paid for twice: finished results are kept). A backend that
        finishes requests one by one tells on_result of each as it finishes; one that finishes
        them all at once (a few seconds' work) may leave it to the returned list."""
        ...

    def close(self) -> None: ...


class TurnLock:
    """A lock granted in arrival order: a short call that arrives while a long call runs gets
    the next turn, between two of the long call's steps, instead of waiting for all of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = self._serving = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


def error_body(
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    status_code: int = 400,
) -> dict:
    """OpenAI's error envelope: {"error": {"message", "type", "param", "code"}}.

    The one builder for the server and the backends. Like OpenAI, every 4xx we make is an
    "invalid_request_error" (a wrong key too: 401 with code "invalid_api_key"); 5xx "server_error".
    """
    err_type = type or ("server_error" if status_code >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def error_result(
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    type: str | None = None,
) -> BackendResult:
    """A failed request as a result, for the server to write as an error line."""
    return BackendResult(
        status_code, error_body(message, type=type, param=param, code=code, status_code=status_code)
    )


def invalid_request(
    message: str, param: str | None = None, code: str | None = None
) -> BackendResult:
    return error_result(400, message, param=param, code=code)


def model_not_found(model: Any, served: list[str]) -> BackendResult:
    return error_result(
        404,
        f"The model '{model}' does not exist or is not served here. Served models: {', '.join(served)}.",
        param="model",
        code="model_not_found",
    )


def check_common(body: Any, known_params: set[str], served: list[str]) -> str | BackendResult:
    """The checks every endpoint shares: an object, known parameters, a served model.

    Returns the model id, or the 400/404 result to answer with."""
    if not isinstance(body, dict):
        return invalid_request("The request body must be a JSON object.")
    unknown = sorted(set(body) - known_params)
    if unknown:
        return invalid_request(
            f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0]
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return invalid_request("You must provide a model parameter.", param="model")
    if model not in served:
        return model_not_found(model, served)
    return model


def server_error(message: str) -> BackendResult:
    return error_result(500, message, type="server_error", code="internal_error")
