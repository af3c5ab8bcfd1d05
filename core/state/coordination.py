"""Records the processes coordinate through: leader locks, heartbeats and the clock's epoch.

- `pb:lock:{name}` string: `{owner}:{fence}`, the holder of a leader lock and its term, with
  expiry (`LeaderLock`).
- `pb:fence:{name}` string: the lock's fencing counter, one more for every new term.
- `pb:heartbeat:worker`, `pb:heartbeat:clock` strings: the time of the last beat, with expiry;
  present means alive.
- `pb:problems:worker`, `pb:problems:clock` hashes: per process instance, JSON {"at", "reasons"}:
  what it needs from Redis and cannot have (say, a structure it cannot recreate). The key
  expires with the heartbeat; an instance's field counts only while fresh, so a dead one's
  reasons fade with it.
- `pb:ready:probe` string, with a short expiry: what a web process writes to learn that Redis
  accepts writes (`/readyz`); a read-only replica, or one refusing writes (OOM, too few
  replicas), fails it while PING still answers.
- `pb:clock:epoch` string, set once per Redis lifetime: when it is gone, Redis came back empty.
- `pb:tenant:{t}:repair` string, JSON `Repair`: the clock's repair of a tenant after that, and
  how far it got (kept once done, until the next one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from core.errors import BridgeError
from core.state._private import PREFIX, Batch, dumps, loads, number, tenant_key, text

EPOCH_KEY = PREFIX + "clock:epoch"
READY_PROBE_KEY = PREFIX + "ready:probe"
READY_PROBE_TTL_SECONDS = 10


def lock_key(name: str) -> str:
    return f"{PREFIX}lock:{name}"


def fence_key(name: str) -> str:
    return f"{PREFIX}fence:{name}"


def repair_key(tenant: str) -> str:
    return tenant_key(tenant, "repair")


class Process(StrEnum):
    WORKER = "worker"
    CLOCK = "clock"


def heartbeat_key(process: Process) -> str:
    return f"{PREFIX}heartbeat:{process.value}"


# ---- leader locks ------------------------------------------------------------------------

# A free lock starts a new term: the fencing counter goes up and is stored with the owner.
# A held one of ours is extended, in the term it has. One step, so no two terms overlap.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if not held then
  local value = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
  return value
end
if string.sub(held, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return held
end
return false
"""
# Extend, or release, only the term we hold: compare-and-set in one step.
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


@dataclass(frozen=True)
class Fence:
    """One term of a leader lock: the lock's key and the value it holds during that term.

    `number` grows with every new term of the lock (until Redis loses its data, when the
    counter starts again; the lock is gone then too, so no older term can match).
    """

    key: str
    value: str  # `{owner}:{number}`

    @property
    def number(self) -> int:
        return int(self.value.rsplit(":", 1)[1])


class FenceLost(BridgeError):
    """A write of a leader whose term is over: its lock expired, or another process leads."""

    def __init__(self, fence: Fence) -> None:
        self.fence = fence
        super().__init__(f"{fence.key}: term {fence.number} is over; the write was refused")


class LeaderLock:
    """A lock with expiry: several processes may run, one acts, a dead one is replaced.

    Each time the lock is taken anew is a term (`fence`); writes made with `fenced` under a
    term are refused once it is over, so a leader that stalled past the TTL cannot overwrite
    what its successor wrote.
    """

    def __init__(self, redis: Redis, name: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = lock_key(name)
        self._fence_key = fence_key(name)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self.fence: Fence | None = None  # the term of the last successful acquire
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock, or keep it if we hold it; False when another process holds it."""
        held = self._acquire(keys=[self.key, self._fence_key], args=[self.token, self.ttl_ms])
        if held is None:
            self.fence = None
            return False
        self.fence = Fence(self.key, text(held))
        return True

    def renew(self) -> bool:
        """Extend the current term only; False when it is over (a new term needs `acquire`)."""
        if self.fence is None:
            return False
        return bool(self._renew(keys=[self.key], args=[self.fence.value, self.ttl_ms]))

    def release(self) -> None:
        if self.fence is not None:
            self._release(keys=[self.key], args=[self.fence.value])
            self.fence = None


def fenced(redis: Redis, fence: Fence | None, write: Callable[[Pipeline], object]) -> list[Any]:
    """Run what `write` queues in one MULTI that commits only while `fence`'s term lasts.

    The lock is WATCHed, so a takeover, or the lock's expiry, between the check and EXEC
    aborts the transaction (FenceLost). No fence: the plain MULTI.
    """
    with redis.pipeline(transaction=True) as pipe:
        if fence is not None:
            pipe.watch(fence.key)  # type: ignore[no-untyped-call]
            held = pipe.get(fence.key)
            if held is None or text(held) != fence.value:
                raise FenceLost(fence)
            pipe.multi()
        write(pipe)
        try:
            return pipe.execute()
        except WatchError:
            assert fence is not None  # only a WATCHed transaction aborts
            raise FenceLost(fence) from None


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


def queue_problems(pipe: Batch, process: Process) -> None:
    """Queue the read `problems_from` decodes."""
    pipe.hgetall(problems_key(process))


async def probe_write_async(redis: aioredis.Redis, now: float) -> None:
    """Write a short-lived key: raises when Redis refuses writes (read-only, OOM, NOREPLICAS)."""
    await redis.set(READY_PROBE_KEY, repr(now), ex=READY_PROBE_TTL_SECONDS)


# ---- the clock's epoch -------------------------------------------------------------------


def mark_epoch(redis: Redis, now: float, fence: Fence | None = None) -> bool:
    """Set the epoch if absent; True when it was absent (Redis is new or came back empty)."""
    result = fenced(redis, fence, lambda pipe: pipe.set(EPOCH_KEY, repr(now), nx=True))
    return bool(result[0])


def epoch_missing(redis: Redis) -> bool:
    """True when Redis is new or came back empty (the clock has not started its repair)."""
    return not redis.exists(EPOCH_KEY)


# ---- the repair after an empty Redis -----------------------------------------------------


class RepairStage(StrEnum):
    """In the order they run: each needs what the one before rebuilt."""

    DIRECTORY = "directory"  # a full directory import (a worker job), which writes the links
    SUBSCRIPTIONS = "subscriptions"  # the reconcile, on those links
    SWEEP = "sweep"  # every linked user's presence, read once
    DONE = "done"


@dataclass(frozen=True)
class Repair:
    since: float  # when the clock found Redis empty
    stage: RepairStage = RepairStage.DIRECTORY
    directory_asked_at: float = 0.0  # when the directory job was last queued
    finished: tuple[tuple[str, float], ...] = ()  # (step, when), in the order they finished
    linked: int | None = None  # Graph users linked when the directory was done
    swept: int | None = None  # presences the sweep read
    needs_sign_in: tuple[str, ...] = ()  # accounts whose tokens were gone

    @property
    def done(self) -> bool:
        return self.stage is RepairStage.DONE

    def to_bytes(self) -> bytes:
        return dumps({
            "since": self.since, "stage": self.stage.value,
            "directory_asked_at": self.directory_asked_at,
            "finished": [list(f) for f in self.finished], "linked": self.linked,
            "swept": self.swept, "needs_sign_in": list(self.needs_sign_in),
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Repair | None:
        """None for a value that is no repair (the next empty Redis starts one again)."""
        data = loads(raw)
        if not isinstance(data, dict) or number(data.get("since")) is None:
            return None
        try:
            stage = RepairStage(str(data.get("stage")))
        except ValueError:
            stage = RepairStage.DIRECTORY  # unknown: from the start, every step is idempotent
        finished = data.get("finished")
        linked, swept = data.get("linked"), data.get("swept")
        accounts = data.get("needs_sign_in")
        return cls(
            since=number(data.get("since")) or 0.0,
            stage=stage,
            directory_asked_at=number(data.get("directory_asked_at")) or 0.0,
            finished=tuple(
                (str(f[0]), number(f[1]) or 0.0)
                for f in (finished if isinstance(finished, list) else [])
                if isinstance(f, list) and len(f) == 2
            ),
            linked=linked if isinstance(linked, int) else None,
            swept=swept if isinstance(swept, int) else None,
            needs_sign_in=tuple(str(a) for a in accounts) if isinstance(accounts, list) else (),
        )


def write_repair(redis: Redis, tenant: str, repair: Repair, fence: Fence | None = None) -> None:
    fenced(redis, fence, lambda pipe: pipe.set(repair_key(tenant), repair.to_bytes()))


def queue_repair(pipe: Batch, tenant: str) -> None:
    """Queue the read `repair_from` decodes."""
    pipe.get(repair_key(tenant))


def repair_from(raw: bytes | str | None) -> Repair | None:
    return None if raw is None else Repair.from_bytes(raw)


def read_repair(redis: Redis, tenant: str) -> Repair | None:
    """The tenant's repair in progress, or the last one; None when there never was one."""
    return repair_from(redis.get(repair_key(tenant)))
