"""Graph's notification POSTs skip Starlette's middleware and router: they are the hot path.

Everything else (and every other method on these paths, so a GET still gets its 405) goes
through the Starlette app unchanged. The handler is the same one the routes use.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from webhook import notifications

HOT_PATHS = frozenset({"/graph/notifications", "/graph/lifecycle"})


class FastPath:
    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in HOT_PATHS:
            scope["app"] = self.app  # what Request.app and the handler's app.state read
            response = await notifications.receive(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
