"""The web's guards (`core.state.guards`): the /pbx/events replay guard, the login throttle."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
import redis.asyncio as aioredis

from core.state import guards

T = TypeVar("T")


def run(redis_url: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_keys_keep_their_stored_names() -> None:
    digest = hashlib.sha256(b"v1=abc").hexdigest()[:40]
    assert guards.pbx_signature_key("v1=abc") == f"pb:pbxsig:{digest}"
    assert guards.login_failures_key("10.0.0.1") == "pb:admin:login-failures:10.0.0.1"


def test_a_signature_is_claimed_once_for_its_window(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def claim_twice(r: aioredis.Redis) -> tuple[bool, bool]:
        first = await guards.claim_pbx_signature(r, "v1=abc", 600)
        return first, await guards.claim_pbx_signature(r, "v1=abc", 600)

    assert run(redis_url, claim_twice) == (True, False)
    assert 0 < redis_client.ttl(guards.pbx_signature_key("v1=abc")) <= 600
    assert run(redis_url, lambda r: guards.claim_pbx_signature(r, "v1=other", 600))


def test_login_failures_count_up_with_an_expiry_and_clear(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def fail_twice(r: aioredis.Redis) -> tuple[int, int]:
        before = await guards.login_failures(r, "10.0.0.1")
        await guards.count_login_failure(r, "10.0.0.1", 900)
        await guards.count_login_failure(r, "10.0.0.1", 900)
        return before, await guards.login_failures(r, "10.0.0.1")

    assert run(redis_url, fail_twice) == (0, 2)
    assert 0 < redis_client.ttl(guards.login_failures_key("10.0.0.1")) <= 900
    assert run(redis_url, lambda r: guards.login_failures(r, "10.0.0.2")) == 0

    async def clear(r: aioredis.Redis) -> int:
        await guards.clear_login_failures(r, "10.0.0.1")
        return await guards.login_failures(r, "10.0.0.1")

    assert run(redis_url, clear) == 0
