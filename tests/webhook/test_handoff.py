from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from core.state import intake
from emulator.harness.redis_server import RedisServer
from webhook.handoff import IntakeWriter


def accepted(n: int) -> intake.Accepted:
    return intake.Accepted("contoso", "notification", {"subscriptionId": "s", "id": f"n{n}"})


async def append_concurrently(url: str, count: int) -> list[int]:
    client = aioredis.Redis.from_url(url)
    writer = IntakeWriter(client)
    try:
        return await asyncio.gather(
            *[writer.append(intake.script_args([accepted(n)], {})) for n in range(count)]
        )
    finally:
        await writer.aclose()
        await client.aclose()


def test_concurrent_requests_each_get_their_own_entry(
    redis_client: redis.Redis, redis_url: str
) -> None:
    kept = asyncio.run(append_concurrently(redis_url, 200))
    assert (kept, redis_client.xlen(intake.STREAM)) == ([1] * 200, 200)


def test_a_flushed_script_is_loaded_again(redis_client: redis.Redis, redis_url: str) -> None:
    redis_client.script_flush()
    assert asyncio.run(append_concurrently(redis_url, 3)) == [1, 1, 1]


def test_redis_down_fails_every_waiting_request() -> None:
    server = RedisServer()  # never started: nothing listens on its port
    with pytest.raises((ConnectionError, OSError, redis.ConnectionError)):
        asyncio.run(append_concurrently(server.url(), 3))
