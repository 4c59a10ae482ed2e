"""The Models API (what this server's backends serve) and the health check."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_workflows.backends.base import model_not_found
from batch_workflows.server.objects import JSON, result_response
from batch_workflows.server.state import server_state


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "batch-workflows"}


async def list_models(request: Request) -> Response:
    pairs = server_state(request).backends.model_ids()
    return JSON({"object": "list", "data": [_model_object(m) for m, _ in pairs]})


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    served = [m for m, _ in server_state(request).backends.model_ids()]
    if model_id not in served:
        return result_response(model_not_found(model_id, served))
    return JSON(_model_object(model_id))


async def health(request: Request) -> Response:
    """200 once the app is up; open without the API key (see auth.BearerAuth)."""
    return JSON({"status": "ok"})


HEALTH_ROUTES = [Route("/health", health, methods=["GET"])]
ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
