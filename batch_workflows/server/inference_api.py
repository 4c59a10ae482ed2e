"""Real-time inference: `/v1/embeddings` and `/v1/chat/completions`, answered by the same
backends that run batches."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_workflows.backends.base import model_not_found
from batch_workflows.errors import ApiError
from batch_workflows.profiles import CHAT, EMBEDDINGS
from batch_workflows.server.http_input import json_body
from batch_workflows.server.objects import result_response
from batch_workflows.server.state import server_state


async def embeddings(request: Request) -> Response:
    return await _run_one(request, EMBEDDINGS)


async def chat_completions(request: Request) -> Response:
    return await _run_one(request, CHAT)


async def _run_one(request: Request, endpoint: str) -> Response:
    """Run one request body on the endpoint's backend; its result is the answer."""
    state = server_state(request)
    body = await json_body(request, state.settings.max_body_bytes)
    if body.get("stream"):
        raise ApiError(400, "stream is not supported by this server", "stream")
    backends = state.backends
    if not backends.configured(endpoint):
        raise ApiError(404, f"this server has no backend for {endpoint}", None,
                       "unsupported_endpoint")
    backend = backends.get(endpoint)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required", "model")
    if not backends.serves(backend, model):
        return result_response(model_not_found(model, backend.model_ids))
    (result,) = await run_in_threadpool(backends.run, endpoint, [body])
    return result_response(result)


ROUTES = [
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
]
