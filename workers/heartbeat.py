"""The worker's heartbeat: alive, and what it needs from Redis and cannot have (/health/system)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from core.state import coordination

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
HEARTBEAT_TTL_SECONDS = 3 * HEARTBEAT_SECONDS


class Problems:
    """This process's current problems, one reason per part; shared by its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}
        self.changed = threading.Event()  # the heartbeat publishes at once, not at its next beat

    def set(self, part: str, reason: str) -> None:
        with self._lock:
            if self._reasons.get(part) == reason:
                return
            self._reasons[part] = reason
        self.changed.set()

    def clear(self, part: str) -> None:
        with self._lock:
            if self._reasons.pop(part, None) is None:
                return
        self.changed.set()

    def reasons(self) -> list[str]:
        with self._lock:
            return [f"{part}: {reason}" for part, reason in sorted(self._reasons.items())]


class Heartbeat:
    """Beats every `HEARTBEAT_SECONDS` (and at once when a problem comes or goes)."""

    def __init__(self, redis: Redis, instance: str, problems: Problems) -> None:
        self.redis = redis
        self.instance = instance
        self.problems = problems

    def beat_once(self) -> None:
        now = time.time()
        coordination.beat(self.redis, coordination.Process.WORKER, now, HEARTBEAT_TTL_SECONDS)
        coordination.report_problems(
            self.redis,
            coordination.Process.WORKER,
            self.instance,
            self.problems.reasons(),
            now,
            HEARTBEAT_TTL_SECONDS,
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.problems.changed.clear()
            # On failure readiness shows it (Redis does not answer the web either); keep trying.
            with contextlib.suppress(RedisError, OSError):
                self.beat_once()
            self.problems.changed.wait(HEARTBEAT_SECONDS)
