"""The optional API key: every path but /health needs `Authorization: Bearer <key>` (or
Anthropic's `x-api-key: <key>`)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from batch_workflows.server.objects import api_error

OPEN_PATHS = ("/health",)


class BearerAuth:
    """ASGI middleware that answers 401 `invalid_api_key` without the right key."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if b"x-api-key" in headers:  # Anthropic's clients send the key in x-api-key
                scheme, token = b"bearer", headers[b"x-api-key"]
            # compare_digest: the time taken does not tell how much of the key was right.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
                response = api_error(401, "Incorrect API key provided.", "invalid_api_key")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
