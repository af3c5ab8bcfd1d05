"""Small url-encoded form bodies (the admin page's forms, the sign-in callback), size-capped."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request


async def read_form(request: Request, limit: int) -> dict[str, str] | None:
    """The form's fields, or None once the body passes `limit` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    # Parsed by hand: Starlette's form parser needs python-multipart, not a dependency.
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
