"""Graph's validation handshake: a POST with `validationToken` that the endpoint must echo."""

from __future__ import annotations

import ipaddress
import secrets
import time
from urllib.parse import urlsplit

import httpx

from emulator.tokens import GraphError
from emulator.world import Delivery, World

VALIDATION_TIMEOUT = 10.0
_LOOPBACK_NAMES = {"localhost"}


def check_url(url: object, field: str) -> str:
    if not isinstance(url, str) or not url:
        raise GraphError(400, "InvalidRequest", f"{field} is required.")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        loopback = host in _LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    # Deviation (documented): plain http is allowed on loopback so tests need no certificates.
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise GraphError(400, "InvalidRequest", f"The {field} must use https.")
    return url


async def validate_endpoint(world: World, url: str) -> bool:
    """Graph's handshake: 200, text/plain, body equal to the (decoded) token, within 10 s."""
    # Real tokens contain spaces and colons, so a subscriber that forgets to decode fails.
    token = f"Validation: Testing client application reachability {secrets.token_urlsafe(12)}+/="
    sent_at = world.clock.now()
    started = time.monotonic()
    status: int | None = None
    ok = False
    try:
        async with httpx.AsyncClient(timeout=VALIDATION_TIMEOUT) as client:
            response = await client.post(
                url,
                params={"validationToken": token},
                headers={"content-type": "text/plain; charset=utf-8"},
            )
        status = response.status_code
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        ok = status == 200 and content_type == "text/plain" and response.text == token
    except httpx.HTTPError:
        ok = False
    with world.lock:
        world.deliveries.append(
            Delivery(
                url,
                {"validationToken": token, "ok": ok},
                1,
                status,
                sent_at,
                time.monotonic() - started,
                "validation",
            )
        )
    return ok
