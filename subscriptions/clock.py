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

from core import keys
from subscriptions.leader import LeaderLock

log = logging.getLogger("subscriptions.clock")
LOCK_TTL_SECONDS = 30.0
TICK_SECONDS = 1.0


@dataclass
class Schedule:
    name: str
    every_seconds: float
    action: Callable[[], object]
    next_at: float = 0.0


def run(redis: Redis, schedules: list[Schedule], stop: threading.Event) -> None:
    lock = LeaderLock(redis, "clock", LOCK_TTL_SECONDS)
    while not stop.is_set():
        try:
            redis.set(keys.CLOCK_HEARTBEAT, str(time.time()), ex=60)
            if lock.acquire():
                run_due(schedules, time.monotonic())
        except (RedisError, OSError):
            log.warning("clock: redis unavailable, retrying")
        stop.wait(TICK_SECONDS)
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
