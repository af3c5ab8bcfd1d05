"""Scheduled RQ jobs (delays, retry intervals) onto their queues: a thread in every worker.

RQ's own scheduler is a forked process that exits on the first Redis error, and a worker
starts it again only at its next maintenance pass; its lock outlives a killed holder by 61 s.
This thread survives Redis errors and keeps RQ's per-queue scheduler locks with a short
expiry, so scheduled work resumes within seconds of Redis or a worker coming back, and
never runs in two workers at once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq.scheduler import RQScheduler
from rq.scripts import ACQUIRE_OR_REFRESH_LOCK_SCRIPT, release_lock
from rq.serializers import JSONSerializer

from workers.heartbeat import Problems

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # how late a due job may be moved
LOCK_SECONDS = 10  # a dead holder's queues are taken over within this
PART = "scheduler"


class Scheduler:
    def __init__(
        self,
        redis: Redis,
        queue_names: Sequence[str],
        problems: Problems | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.redis = redis
        self.queue_names = tuple(queue_names)
        self.problems = problems or Problems()
        self.token = uuid.uuid4().hex
        self.owned: set[str] = set()
        self._lock = redis.register_script(ACQUIRE_OR_REFRESH_LOCK_SCRIPT)
        # Only RQ's code that moves due jobs is used (rate limits, vanished jobs); no process.
        self._rq = RQScheduler(
            list(self.queue_names),
            connection=redis,
            serializer=JSONSerializer,
            name=self.token,
            logging_level=log_level,
        )

    def run_once(self) -> set[str]:
        """Take or keep each queue's lock (one round trip), then move the due jobs of the
        queues held."""
        pipe = self.redis.pipeline(transaction=False)
        for name in self.queue_names:
            key = RQScheduler.get_locking_key(name)
            self._lock(keys=[key], args=[self.token, LOCK_SECONDS], client=pipe)
        outcomes = pipe.execute()  # 1 acquired, 2 refreshed, 0 another's
        self.owned = {name for name, got in zip(self.queue_names, outcomes, strict=True) if got}
        if self.owned:
            self._rq.prepare_registries(sorted(self.owned))
            self._rq.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        return self.owned

    def release(self) -> None:
        """Hand the locks over at once on a clean stop."""
        for name in self.owned:
            release_lock(self.redis, RQScheduler.get_locking_key(name), self.token)
        self.owned = set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
                self.problems.clear(PART)
            except ResponseError as exc:  # Redis answers but refuses (out of memory, ...)
                self.problems.set(PART, str(exc))
                log.error("scheduler: redis refused: %s", exc)
            except (RedisError, OSError):
                log.warning("scheduler: redis unavailable, retrying")
            stop.wait(TICK_SECONDS)
        try:
            self.release()
        except (RedisError, OSError):
            log.warning("scheduler: could not release its locks; they expire in %d s", LOCK_SECONDS)
