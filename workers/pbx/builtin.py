"""The `builtin` adapter: the bridge is the presence authority; PBXs poll or subscribe.

Profiles are served by the web process (`/api/v1/tenants/{tenant}/...`) from Redis.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.exceptions import RedisError

from core.errors import PbxError
from core.state import pbx
from core.state.pbx import BuiltinProfile
from workers.pbx.base import BatchApply, BatchRead, PbxAdapter, PbxUserRecord, ProfileChange


class BuiltinAdapter(PbxAdapter, BatchApply, BatchRead):
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
        pbx.publish_builtin(pipe, self.tenant, [
            BuiltinProfile(c.user, c.profile, c.availability, c.activity, c.version, now)
            for c in changes
        ])  # fmt: skip
        try:
            pipe.execute()
        except (RedisError, OSError) as exc:
            raise PbxError(
                f"builtin: redis unavailable: {type(exc).__name__}", transient=True
            ) from exc

    def read_profile(self, user: str) -> str | None:
        served = pbx.builtin_profile(self.redis, self.tenant, user)
        return None if served is None else served.profile

    def read_many(self, users: list[str]) -> dict[str, str]:
        try:
            served = pbx.builtin_profiles(self.redis, self.tenant, users)
        except (RedisError, OSError) as exc:
            raise PbxError(
                f"builtin: redis unavailable: {type(exc).__name__}", transient=True
            ) from exc
        return {user: p.profile for user, p in served.items() if p.profile}

    def close(self) -> None:
        pass
