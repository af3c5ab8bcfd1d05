"""The web process's short-lived guards: the `/pbx/events` replay guard and the admin login
throttle. Both are strings that expire; the operations are async, on the app's connection."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from core.state._private import PREFIX


def pbx_signature_key(signature: str) -> str:
    """`pb:pbxsig:{digest}`: a `/pbx/events` signature seen; hashed, so its length is fixed."""
    return f"{PREFIX}pbxsig:{hashlib.sha256(signature.encode()).hexdigest()[:40]}"


def login_failures_key(address: str) -> str:
    """`pb:admin:login-failures:{address}`: failed admin logins from one client address."""
    return f"{PREFIX}admin:login-failures:{address}"


async def claim_pbx_signature(redis: Redis, signature: str, ttl_seconds: int) -> bool:
    """Remember a signature for `ttl_seconds`; False when it was seen already (a replay)."""
    return bool(await redis.set(pbx_signature_key(signature), 1, nx=True, ex=ttl_seconds))


async def login_failures(redis: Redis, address: str) -> int:
    return int(await redis.get(login_failures_key(address)) or 0)


async def count_login_failure(redis: Redis, address: str, lockout_seconds: int) -> None:
    """One more failure; the count lapses `lockout_seconds` after the latest one."""
    key = login_failures_key(address)
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, lockout_seconds)
    await pipe.execute()


async def clear_login_failures(redis: Redis, address: str) -> None:
    await redis.delete(login_failures_key(address))
