"""The ASGI app: the routes of each API, OpenAI-shaped errors, and the worker's lifespan.

Handlers live by API: `files_api`, `batches_api`, `inference_api` (real-time embeddings and
chat), `models_api` (models and health). They reach the server's store, backends and worker
through `state.server_state(request)`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from batch_workflows.anthropic_batches.wire import STATUS_ERROR, error_object
from batch_workflows.errors import ApiError
from batch_workflows.server import (
    anthropic_api,
    batches_api,
    files_api,
    inference_api,
    models_api,
)
from batch_workflows.server.auth import BearerAuth
from batch_workflows.server.objects import JSON, api_error
from batch_workflows.server.settings import ServerSettings
from batch_workflows.server.state import ServerState

log = logging.getLogger("batch_workflows.server")

ROUTES = [
    *models_api.HEALTH_ROUTES,
    *files_api.ROUTES,
    *batches_api.ROUTES,
    *inference_api.ROUTES,
    *anthropic_api.ROUTES,
    *models_api.ROUTES,
]


def create_app(settings: ServerSettings) -> ASGIApp:
    """The ASGI app; the worker threads start and stop with the app's lifespan."""
    state = ServerState.open(settings)
    app = Starlette(
        routes=ROUTES,
        exception_handlers={
            ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash,
        },
        lifespan=lifespan,
    )
    app.state.server = state
    if settings.api_key:
        return BearerAuth(app, settings.api_key)
    return app


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state: ServerState = app.state.server
    state.worker.start()
    log.info("serving on http://%s:%d/v1 (data dir %s)", state.settings.host,
             state.settings.port, state.settings.data_dir)
    try:
        yield
    finally:
        state.worker.stop()
        state.backends.close()


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if request.url.path.startswith("/v1/messages"):  # Anthropic's routes, Anthropic's envelope
        kind = STATUS_ERROR.get(exc.status, "api_error" if exc.status >= 500 else
                                "invalid_request_error")
        return JSON(error_object(kind, exc.message), status_code=exc.status)
    return api_error(exc.status, exc.message, exc.code, exc.param)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in OpenAI's envelope."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return api_error(exc.status_code, str(exc.detail), code)


async def on_crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return api_error(500, "The server had an error while processing your request.",
                     "server_error")
