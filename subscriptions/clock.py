"""The clock loop: runs each schedule when due, only while holding the leader lock.

Each tick takes (or keeps) the lock and hands its term (`core.state.coordination.Fence`) to
the schedules, whose writes carry it. A clock that stalls past the lock's TTL (a long GC
pause, SIGSTOP, a frozen VM) and wakes after another took over finds its term over at its
next write: the write is refused (`FenceLost`) and the round stops there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from core.state import coordination
from core.state.coordination import Fence, FenceLost, LeaderLock, Process

log = logging.getLogger("subscriptions.clock")
LOCK_NAME = "clock"
LOCK_TTL_SECONDS = 30.0
TICK_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 60


@dataclass
class Schedule:
    name: str
    every_seconds: float
    action: Callable[[], object]
    next_at: float = 0.0


def leader_lock(redis: Redis, ttl_seconds: float = LOCK_TTL_SECONDS) -> LeaderLock:
    """The lock every clock, and every one-shot run of a schedule, holds while it acts."""
    return LeaderLock(redis, LOCK_NAME, ttl_seconds)


def take_leader_lock(redis: Redis, wait_seconds: float = 0.0) -> LeaderLock | None:
    """The leader lock for one action, or None while another clock holds it.

    With `wait_seconds`, one more try after that long: a clock that is stopping releases the
    lock as it stops, so a command started beside its shutdown still gets to act.
    """
    lock = leader_lock(redis)
    if lock.acquire():
        return lock
    if wait_seconds <= 0:
        return None
    time.sleep(wait_seconds)
    return lock if lock.acquire() else None


class _Keeper:
    """Renews the lock every third of its TTL while an action runs longer than a tick.

    Only the term the round started in: a lock lost meanwhile is not taken again here, since
    the round's writes carry that term and would be refused anyway.
    """

    def __init__(self, lock: LeaderLock, ttl_seconds: float) -> None:
        self._lock = lock
        self._every = ttl_seconds / 3
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-lock-keeper", daemon=True)

    def __enter__(self) -> _Keeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                if not self._lock.renew():
                    log.error("clock: lost the leader lock during a long action")
            except (RedisError, OSError):
                log.warning("clock: could not renew the leader lock")


def run(
    redis: Redis,
    schedules: list[Schedule],
    stop: threading.Event,
    *,
    lock_ttl: float = LOCK_TTL_SECONDS,
    tick: float = TICK_SECONDS,
    on_tick: Callable[[bool], None] | None = None,
    lead: Callable[[Fence | None], None] | None = None,
) -> None:
    """Tick until `stop`; only the clock holding the lock runs schedules. `on_tick(leader)`.

    `lead(fence)` is told the term before the schedules of a tick run.
    """
    lock = leader_lock(redis, lock_ttl)
    while not stop.is_set():
        leader = False
        try:
            coordination.beat(redis, Process.CLOCK, time.time(), HEARTBEAT_TTL_SECONDS)
            leader = lock.acquire()
            if leader:
                if lead is not None:
                    lead(lock.fence)
                with _Keeper(lock, lock_ttl):
                    run_due(schedules, time.monotonic())
        except FenceLost as exc:
            log.error("clock: lost the leader lock mid-round; stopped there: %s", exc)
        except (RedisError, OSError):
            log.warning("clock: redis unavailable, retrying")
        if on_tick is not None:
            on_tick(leader)
        stop.wait(tick)
    with contextlib.suppress(RedisError, OSError):  # the lock expires by itself
        lock.release()


def run_due(schedules: list[Schedule], now: float) -> None:
    for schedule in schedules:
        if now < schedule.next_at:
            continue
        schedule.next_at = now + schedule.every_seconds
        try:
            schedule.action()
        except FenceLost:
            raise  # no longer the leader: no schedule of this round may go on
        except Exception:  # one failing schedule must not stop the others
            log.exception("schedule failed", extra={"schedule": schedule.name})
