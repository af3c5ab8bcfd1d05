"""Records the processes coordinate through: leader locks, heartbeats and the clock's epoch.

- `pb:lock:{name}` string: the owner token of a leader lock, with expiry (`LeaderLock`).
- `pb:heartbeat:worker`, `pb:heartbeat:clock` strings: the time of the last beat, with expiry;
  present means alive.
- `pb:clock:epoch` string, set once per Redis lifetime: when it is gone, Redis came back empty.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

import redis.asyncio as aioredis
from redis import Redis

from core.state._private import PREFIX, Batch

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
