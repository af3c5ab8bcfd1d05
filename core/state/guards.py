"""The web process's short-lived guards: the `/pbx/events` replay guards and the admin login
throttle. All are strings that expire; the operations are async, on the app's connection."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from core.state._private import PREFIX, tenant_key, text


def pbx_signature_key(signature: str) -> str:
    """`pb:pbxsig:{digest}`: a `/pbx/events` signature seen; hashed, so its length is fixed."""
    return f"{PREFIX}pbxsig:{hashlib.sha256(signature.encode()).hexdigest()[:40]}"


def pbx_webhook_id_key(tenant: str, webhook_id: str) -> str:
    """`pb:tenant:{t}:pbx-webhook-id:{digest}`: a Standard Webhooks message id seen."""
    digest = hashlib.sha256(webhook_id.encode()).hexdigest()[:40]
    return tenant_key(tenant, f"pbx-webhook-id:{digest}")


def login_failures_key(address: str) -> str:
    """`pb:admin:login-failures:{address}`: failed admin logins from one client address."""
    return f"{PREFIX}admin:login-failures:{address}"


async def claim_pbx_signature(redis: Redis, signature: str, ttl_seconds: int) -> bool:
    """Remember a signature for `ttl_seconds`; False when it was seen already (a replay)."""
    return bool(await redis.set(pbx_signature_key(signature), 1, nx=True, ex=ttl_seconds))


async def claim_pbx_webhook_id(
    redis: Redis, tenant: str, webhook_id: str, body_digest: str, ttl_seconds: int
) -> str | None:
    """Remember a message id with its body's digest for `ttl_seconds`.

    None when the id is new; else the digest stored when it was first seen (the same one: the
    message again; another: an id used twice).
    """
    key = pbx_webhook_id_key(tenant, webhook_id)
    while not await redis.set(key, body_digest, nx=True, ex=ttl_seconds):
        first = await redis.get(key)
        if first is not None:
            return text(first)
        # It lapsed between the two calls: the id is new again, so claim it once more.
    return None


async def forget_pbx_webhook_id(redis: Redis, tenant: str, webhook_id: str) -> None:
    """Undo a claim whose message was not taken in, so the sender's retry is not a replay."""
    await redis.delete(pbx_webhook_id_key(tenant, webhook_id))


async def login_failures(redis: Redis, address: str) -> int:
    return int(await redis.get(login_failures_key(address)) or 0)


async def count_login_attempt(redis: Redis, address: str, lockout_seconds: int) -> int:
    """One more attempt with the admin key, counted before the key is compared; the count so far.

    INCR and EXPIRE in one transaction, so parallel attempts each see their own number and a
    count never stays without its expiry. It lapses `lockout_seconds` after the latest one.
    """
    key = login_failures_key(address)
    pipe = redis.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, lockout_seconds)
    count, _ = await pipe.execute()
    return int(count)


async def clear_login_failures(redis: Redis, address: str) -> None:
    await redis.delete(login_failures_key(address))
