"""Subscription lookup for the webhook, cached so a busy endpoint rarely asks Redis."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis.asyncio as aioredis

from core.state import subscriptions as sub_state
from core.state.subscriptions import Registration

POSITIVE_TTL = 30.0  # a deleted subscription's stragglers are harmless to the workers
NEGATIVE_TTL = 2.0  # short, so a subscription created a moment ago is seen quickly
MAX_ENTRIES = 50_000


class SubscriptionLookup:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._cache: dict[str, tuple[float, Registration | None]] = {}

    async def get_many(self, ids: Iterable[str]) -> dict[str, Registration | None]:
        now = time.monotonic()
        found: dict[str, Registration | None] = {}
        missing: list[str] = []
        for sid in ids:
            cached = self._cache.get(sid)
            if cached is not None and cached[0] > now:
                found[sid] = cached[1]
            else:
                missing.append(sid)
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for sid in missing:
                sub_state.queue_registration(pipe, sid)
            rows = await pipe.execute()
            if len(self._cache) > MAX_ENTRIES:
                self._cache.clear()
            for sid, row in zip(missing, rows, strict=True):
                record = sub_state.registration_from_row(sid, row)
                ttl = POSITIVE_TTL if record else NEGATIVE_TTL
                self._cache[sid] = (now + ttl, record)
                found[sid] = record
        return found
