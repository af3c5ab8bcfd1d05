"""API-key checks for the web routes that are not Graph's (constant time, never logged).

The admin key is also throttled per client address: every attempt with it is counted in Redis
before the compare, so parallel guesses each take a number, and once ADMIN_KEY_ATTEMPTS are
spent even the right key is refused until the count lapses (a success clears it).
"""

from __future__ import annotations

import contextlib
import hmac
from enum import Enum

from pydantic import SecretStr
from redis.exceptions import RedisError
from starlette.requests import Request

from core.state import guards

ADMIN_KEY_ATTEMPTS = 10  # attempts per client address before a lockout
ADMIN_KEY_LOCKOUT_SECONDS = 900


class KeyCheck(Enum):
    GRANTED = "granted"
    DENIED = "denied"
    LOCKED = "locked"  # too many attempts from this address: 429, Retry-After


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer ...`, else `X-API-Key`."""
    token = bearer_token(request)
    return token if token is not None else request.headers.get("x-api-key")


def key_matches(presented: str | None, expected: SecretStr | None) -> bool:
    if presented is None or expected is None:
        return False  # an unset key means the surface is closed, never open
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


async def check_admin_key(request: Request, presented: str) -> KeyCheck:
    """`presented` against the admin key, counted by the throttle first."""
    expected: SecretStr | None = request.app.state.settings.process.admin_api_key
    if expected is None:
        return KeyCheck.DENIED  # closed: nothing to guess
    redis = request.app.state.redis
    address = request.client.host if request.client else "unknown"
    try:
        attempts = await guards.count_login_attempt(redis, address, ADMIN_KEY_LOCKOUT_SECONDS)
    except (RedisError, OSError):
        attempts = 0  # no Redis, no throttle: the constant-time check still stands
    if attempts > ADMIN_KEY_ATTEMPTS:
        return KeyCheck.LOCKED
    if not key_matches(presented, expected):
        return KeyCheck.DENIED
    with contextlib.suppress(RedisError, OSError):
        await guards.clear_login_failures(redis, address)
    return KeyCheck.GRANTED
