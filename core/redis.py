"""Redis connections with the timeouts every process uses."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

SOCKET_TIMEOUT = 2.0  # well inside Graph's 3 s, so a dead Redis becomes a quick 503


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )


def connect_async(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry_on_timeout=False,
    )
