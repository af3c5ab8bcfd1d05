"""API-key checks for the web routes that are not Graph's (constant time, never logged)."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import Request


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def key_matches(presented: str | None, expected: SecretStr | None) -> bool:
    if presented is None or expected is None:
        return False  # an unset key means the surface is closed, never open
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())
