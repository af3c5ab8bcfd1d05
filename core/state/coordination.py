"""Records the processes coordinate through: leader locks, heartbeats and the clock's epoch.

- `pb:lock:{name}` string: the owner token of a leader lock, with expiry (`LeaderLock`).
- `pb:heartbeat:worker`, `pb:heartbeat:clock` strings: the time of the last beat, with expiry;
  present means alive.
- `pb:problems:worker`, `pb:problems:clock` hashes: per process instance, JSON {"at", "reasons"}:
  what it needs from Redis and cannot have (say, a structure it cannot recreate). The key
  expires with the heartbeat; an instance's field counts only while fresh, so a dead one's
  reasons fade with it.
- `pb:clock:epoch` string, set once per Redis lifetime: when it is gone, Redis came back empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis import Redis

from core.state._private import PREFIX, Batch, dumps, loads, text

EPOCH_KEY = PREFIX + "clock:epoch"


def lock_key(name: str) -> str:
    return f"{PREFIX}lock:{name}"


class Process(StrEnum):
    WORKER = "worker"
    CLOCK = "clock"


def heartbeat_key(process: Process) -> str:
    return f"{PREFIX}heartbeat:{process.value}"


# ---- leader locks ------------------------------------------------------------------------

# Extend only while we still own it: compare-and-set in one step.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    """A lock with expiry: several processes may run, one acts, a dead one is replaced."""

    def __init__(self, redis: Redis, name: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = lock_key(name)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock, or keep it if we hold it; False when another process holds it."""
        if self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


# ---- heartbeats --------------------------------------------------------------------------


def beat(redis: Redis, process: Process, now: float, ttl_seconds: int) -> None:
    """Say the process is alive for the next `ttl_seconds`."""
    redis.set(heartbeat_key(process), repr(now), ex=ttl_seconds)


def problems_key(process: Process) -> str:
    return f"{PREFIX}problems:{process.value}"


def report_problems(
    redis: Redis,
    process: Process,
    instance: str,
    reasons: Sequence[str],
    now: float,
    ttl_seconds: int,
) -> None:
    """Say what this instance cannot do for the next `ttl_seconds` (none: clear its entry)."""
    key = problems_key(process)
    pipe = redis.pipeline(transaction=True)
    if reasons:
        pipe.hset(key, instance, dumps({"at": now, "ttl": ttl_seconds, "reasons": list(reasons)}))
        pipe.expire(key, ttl_seconds)
    else:
        pipe.hdel(key, instance)
    pipe.execute()


def problems_from(raw: Mapping[bytes, bytes], now: float) -> list[str]:
    """The fresh reasons of every instance, from the problems hash (stale entries ignored)."""
    found: list[str] = []
    for instance, value in sorted(raw.items()):
        entry: Any = loads(value)
        if not isinstance(entry, dict):
            continue
        at, ttl, reasons = entry.get("at"), entry.get("ttl"), entry.get("reasons")
        if not isinstance(at, int | float) or not isinstance(ttl, int | float):
            continue
        if at + ttl < now or not isinstance(reasons, list):
            continue
        found += [f"{text(instance)}: {r}" for r in reasons if isinstance(r, str)]
    return found


def problems(redis: Redis, process: Process, now: float) -> list[str]:
    raw: Any = redis.hgetall(problems_key(process))
    return problems_from(raw, now)


async def problems_async(redis: aioredis.Redis, process: Process, now: float) -> list[str]:
    """`problems` for the web process's asyncio client."""
    raw: Any = await redis.hgetall(problems_key(process))
    return problems_from(raw, now)


def queue_alive(pipe: Batch, process: Process) -> None:
    """Queue the liveness check (a count, 0 or 1, in the results)."""
    pipe.exists(heartbeat_key(process))


def alive(redis: Redis, process: Process) -> bool:
    return bool(redis.exists(heartbeat_key(process)))


async def alive_async(redis: aioredis.Redis, process: Process) -> bool:
    """`alive` for the web process's asyncio client."""
    return bool(await redis.exists(heartbeat_key(process)))


# ---- the clock's epoch -------------------------------------------------------------------


def mark_epoch(redis: Redis, now: float) -> bool:
    """Set the epoch if absent; True when it was absent (Redis is new or came back empty)."""
    return bool(redis.set(EPOCH_KEY, repr(now), nx=True))
