"""The clock loop: runs each schedule when due, only while holding the leader lock."""

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
from core.state.coordination import LeaderLock, Process

log = logging.getLogger("subscriptions.clock")
LOCK_TTL_SECONDS = 30.0
TICK_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 60


@dataclass
class Schedule:
    name: str
    every_seconds: float
    action: Callable[[], object]
    next_at: float = 0.0


class _Keeper:
    """Renews the lock every third of its TTL while an action runs longer than a tick."""

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
                if not self._lock.acquire():
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
) -> None:
    """Tick until `stop`; only the clock holding the lock runs schedules. `on_tick(leader)`."""
    lock = LeaderLock(redis, "clock", lock_ttl)
    while not stop.is_set():
        leader = False
        try:
            coordination.beat(redis, Process.CLOCK, time.time(), HEARTBEAT_TTL_SECONDS)
            leader = lock.acquire()
            if leader:
                with _Keeper(lock, lock_ttl):
                    run_due(schedules, time.monotonic())
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
        except Exception:  # one failing schedule must not stop the others
            log.exception("schedule failed", extra={"schedule": schedule.name})
