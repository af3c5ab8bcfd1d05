"""Desired PBX state: what each PBX user's profile should be, versioned, and what was applied.

Versions come from one atomic counter per tenant, and a desired record is only replaced by
a newer version, so two workers racing on the same user can never leave a stale profile.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from redis import Redis

from core import keys
from workers.pbx.base import ProfileChange

EVENTS_KEPT = 50

# KEYS: desired hash, version counter hash. ARGV: user, profile JSON (without version), ...
_SET_DESIRED = """
local out = {}
for i = 1, #ARGV, 2 do
  local version = redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  local record = cjson.decode(ARGV[i + 1])
  record['version'] = version
  redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(record))
  out[#out + 1] = version
end
return out
"""


# KEYS: event lists. ARGV: cap, then one event JSON per key.
_RECORD_EVENTS = """
local cap = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i + 1])
  redis.call('LTRIM', KEYS[i], 0, cap - 1)
end
return #KEYS
"""


@dataclass(frozen=True)
class Desired:
    user: str
    profile: str
    availability: str
    activity: str
    version: int
    set_at: float

    def change(self) -> ProfileChange:
        return ProfileChange(
            self.user, self.profile, self.availability, self.activity, self.version
        )


_versions_key = keys.desired_versions


def set_desired(redis: Redis, tenant: str, changes: list[ProfileChange]) -> list[Desired]:
    """Store new desired profiles; each gets the next version of its user."""
    if not changes:
        return []
    now = time.time()
    args: list[str | bytes] = []
    for c in changes:
        args += [
            c.user,
            orjson.dumps(
                {
                    "user": c.user,
                    "profile": c.profile,
                    "availability": c.availability,
                    "activity": c.activity,
                    "set_at": now,
                }
            ),
        ]
    script = redis.register_script(_SET_DESIRED)
    versions = script(keys=[keys.desired(tenant), _versions_key(tenant)], args=args)
    return [
        Desired(c.user, c.profile, c.availability, c.activity, int(v), now)
        for c, v in zip(changes, versions, strict=True)
    ]


def load(redis: Redis, tenant: str, users: list[str]) -> dict[str, tuple[Desired | None, int]]:
    """Desired record and applied version of each user, in one round trip."""
    if not users:
        return {}
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.desired(tenant), users)
    pipe.hmget(keys.applied(tenant), users)
    desired_raw, applied_raw = pipe.execute()
    out: dict[str, tuple[Desired | None, int]] = {}
    for user, d, a in zip(users, desired_raw, applied_raw, strict=True):
        out[user] = (Desired(**orjson.loads(d)) if d else None, int(a or 0))
    return out


def pending_users(redis: Redis, tenant: str) -> list[str]:
    """Users whose desired version is ahead of what the PBX has."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.desired(tenant))
    pipe.hgetall(keys.applied(tenant))
    pipe.hgetall(keys.dead_letters(tenant))
    desired, applied, dead = pipe.execute()
    pending = []
    for user, raw in desired.items():
        version = orjson.loads(raw)["version"]
        dead_version = orjson.loads(dead[user])["version"] if user in dead else -1
        if version > int(applied.get(user, 0)) and version != dead_version:
            pending.append(user.decode() if isinstance(user, bytes) else str(user))
    return sorted(pending)


def mark_applied(
    redis: Redis, tenant: str, applied: list[Desired], event_extra: dict[str, Any]
) -> None:
    if not applied:
        return
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.applied(tenant), mapping={d.user: d.version for d in applied})
    pipe.hdel(keys.dead_letters(tenant), *[d.user for d in applied])
    record_events(
        pipe,
        tenant,
        [
            (
                d.user,
                {
                    "profile": d.profile,
                    "availability": d.availability,
                    "activity": d.activity,
                    "version": d.version,
                    "result": "applied",
                    **event_extra,
                    "latency_ms": round((now - d.set_at) * 1000, 1),
                },
            )
            for d in applied
        ],
    )
    pipe.execute()


def dead_letter(redis: Redis, tenant: str, d: Desired, reason: str) -> None:
    entry = {**asdict(d), "reason": reason, "at": time.time()}
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.dead_letters(tenant), d.user, orjson.dumps(entry))
    record_event(
        pipe,
        tenant,
        d.user,
        {"profile": d.profile, "version": d.version, "result": "dead-lettered", "reason": reason},
    )
    pipe.execute()


def dead_letters(redis: Redis, tenant: str) -> list[dict[str, Any]]:
    return sorted(
        (orjson.loads(v) for v in redis.hvals(keys.dead_letters(tenant))), key=lambda e: e["at"]
    )


def record_event(pipe: Any, tenant: str, user: str, event: dict[str, Any]) -> None:
    key = keys.user_events(tenant, user)
    pipe.lpush(key, orjson.dumps({"at": time.time(), **event}))
    pipe.ltrim(key, 0, EVENTS_KEPT - 1)


def record_events(pipe: Any, tenant: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """`record_event` for many users in one command: per-command client overhead, not
    Redis, was the largest cost of a batch (two commands per user)."""
    if not events:
        return
    now = time.time()
    script = pipe.register_script(_RECORD_EVENTS)
    script(
        keys=[keys.user_events(tenant, user) for user, _ in events],
        args=[EVENTS_KEPT, *[orjson.dumps({"at": now, **event}) for _, event in events]],
    )


def recent_events(
    redis: Redis, tenant: str, user: str, count: int = EVENTS_KEPT
) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in redis.lrange(keys.user_events(tenant, user), 0, count - 1)]
