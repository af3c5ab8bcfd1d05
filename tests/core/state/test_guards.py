"""The web's guards (`core.state.guards`): the /pbx/events replay guards, the login throttle."""

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
    digest = hashlib.sha256(b"msg_1").hexdigest()[:40]
    assert guards.pbx_webhook_id_key("contoso", "msg_1") == (
        f"pb:tenant:contoso:pbx-webhook-id:{digest}"
    )


def test_a_signature_is_claimed_once_for_its_window(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def claim_twice(r: aioredis.Redis) -> tuple[bool, bool]:
        first = await guards.claim_pbx_signature(r, "v1=abc", 600)
        return first, await guards.claim_pbx_signature(r, "v1=abc", 600)

    assert run(redis_url, claim_twice) == (True, False)
    assert 0 < redis_client.ttl(guards.pbx_signature_key("v1=abc")) <= 600
    assert run(redis_url, lambda r: guards.claim_pbx_signature(r, "v1=other", 600))


def test_a_webhook_id_is_claimed_once_per_tenant_and_keeps_its_first_body(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def claims(r: aioredis.Redis) -> list[str | None]:
        return [
            await guards.claim_pbx_webhook_id(r, "contoso", "msg_1", "body-a", 600),
            await guards.claim_pbx_webhook_id(r, "contoso", "msg_1", "body-b", 600),
            await guards.claim_pbx_webhook_id(r, "fabrikam", "msg_1", "body-c", 600),
        ]

    assert run(redis_url, claims) == [None, "body-a", None]
    assert 0 < redis_client.ttl(guards.pbx_webhook_id_key("contoso", "msg_1")) <= 600


def test_a_forgotten_webhook_id_can_be_claimed_again(redis_url: str) -> None:
    async def claim_forget_claim(r: aioredis.Redis) -> tuple[str | None, str | None]:
        first = await guards.claim_pbx_webhook_id(r, "contoso", "msg_1", "body-a", 600)
        await guards.forget_pbx_webhook_id(r, "contoso", "msg_1")
        return first, await guards.claim_pbx_webhook_id(r, "contoso", "msg_1", "body-a", 600)

    assert run(redis_url, claim_forget_claim) == (None, None)


def test_login_attempts_count_up_with_an_expiry_and_clear(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def attempt_twice(r: aioredis.Redis) -> tuple[int, int, int, int]:
        before = await guards.login_failures(r, "10.0.0.1")
        first = await guards.count_login_attempt(r, "10.0.0.1", 900)
        second = await guards.count_login_attempt(r, "10.0.0.1", 900)
        return before, first, second, await guards.login_failures(r, "10.0.0.1")

    assert run(redis_url, attempt_twice) == (0, 1, 2, 2)
    assert 0 < redis_client.ttl(guards.login_failures_key("10.0.0.1")) <= 900
    assert run(redis_url, lambda r: guards.login_failures(r, "10.0.0.2")) == 0

    async def clear(r: aioredis.Redis) -> int:
        await guards.clear_login_failures(r, "10.0.0.1")
        return await guards.login_failures(r, "10.0.0.1")

    assert run(redis_url, clear) == 0


def test_parallel_login_attempts_each_get_their_own_number(redis_url: str) -> None:
    async def attempts(r: aioredis.Redis) -> list[int]:
        counted = [guards.count_login_attempt(r, "10.0.0.1", 900) for _ in range(40)]
        return sorted(await asyncio.gather(*counted))

    assert run(redis_url, attempts) == list(range(1, 41))
