"""The `builtin` adapter: the bridge is the presence authority; PBXs poll or subscribe.

Profiles are served by the web process (`/api/v1/tenants/{tenant}/...`) from Redis.
"""

from __future__ import annotations

import time

import orjson
from redis import Redis
from redis.exceptions import RedisError

from core import keys
from core.errors import PbxError
from workers.pbx.base import BatchApply, PbxAdapter, PbxUserRecord, ProfileChange

EVENTS_MAXLEN = 10_000


class BuiltinAdapter(PbxAdapter, BatchApply):
    name = "builtin"

    def __init__(self, redis: Redis, tenant: str) -> None:
        self.redis = redis
        self.tenant = tenant

    def list_users(self) -> list[PbxUserRecord] | None:
        return None  # the tenants file is the directory

    def apply_profile(self, change: ProfileChange) -> None:
        self.apply_many([change])

    def apply_many(self, changes: list[ProfileChange]) -> None:
        """Apply several changes in one round trip (the hot path of the pipeline)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        records = {
            change.user: orjson.dumps(
                {
                    "user": change.user,
                    "profile": change.profile,
                    "availability": change.availability,
                    "activity": change.activity,
                    "version": change.version,
                    "updated_at": now,
                }
            )
            for change in changes
        }
        if records:
            pipe.hset(keys.builtin_profiles(self.tenant), mapping=records)  # type: ignore[arg-type]
        for record in records.values():
            pipe.xadd(
                keys.builtin_events(self.tenant),
                {"data": record},
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
        try:
            pipe.execute()
        except (RedisError, OSError) as exc:
            raise PbxError(
                f"builtin: redis unavailable: {type(exc).__name__}", transient=True
            ) from exc

    def read_profile(self, user: str) -> str | None:
        raw = self.redis.hget(keys.builtin_profiles(self.tenant), user)
        return None if raw is None else str(orjson.loads(raw)["profile"])

    def close(self) -> None:
        pass
