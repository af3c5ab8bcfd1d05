"""The intake forwarder: stream entries to RQ jobs, many items per job, many jobs per round trip.

Lifecycle items go to the clock's inbox instead (`core.queue.INTAKE_ROUTES`); the intake
records themselves are `core.state.intake`.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from core.queue import INTAKE_BATCH, route
from core.state import intake
from workers.heartbeat import Problems

log = logging.getLogger(__name__)

PART = "intake"


class IntakeForwarder:
    def __init__(
        self, redis: Redis, consumer: str, window_ms: int = 0, problems: Problems | None = None
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.window_ms = window_ms
        self.problems = problems or Problems()
        self._claim_cursor = "0-0"

    def ensure_group(self) -> None:
        intake.ensure_group(self.redis)

    def run_once(self, block_ms: int = 1000) -> int:
        """Forward what is waiting (or what a dead worker left); returns items forwarded."""
        self._claim_cursor, entries = intake.claim_stale(
            self.redis, self.consumer, self._claim_cursor, INTAKE_BATCH
        )
        if not entries:
            entries = intake.read_new(self.redis, self.consumer, INTAKE_BATCH, block_ms)
            if entries and self.window_ms and len(entries) < INTAKE_BATCH:
                # Coalesce a burst: more ids per job means fewer Graph reads.
                time.sleep(self.window_ms / 1000)
                entries += intake.read_new(self.redis, self.consumer, INTAKE_BATCH - len(entries))
        return self.forward(entries)

    def forward(self, entries: list[intake.Entry]) -> int:
        """Route every item and ack its entry in one MULTI: forwarded once, or left pending."""
        if not entries:
            return 0
        grouped = intake.group(entries)
        pipe = self.redis.pipeline(transaction=True)
        for (tenant, kind), items in grouped.items():
            route(kind)(self.redis, tenant, items, pipe)
        intake.queue_ack(pipe, [eid for eid, _ in entries])
        pipe.execute()
        return sum(len(items) for items in grouped.values())

    def run(self, stop: threading.Event) -> None:
        """Forward until stopped; the group is (re)created whenever it is missing."""
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                self.run_once()
                self.problems.clear(PART)
            except ResponseError as exc:
                group_ready = False
                if intake.missing_group(exc):
                    log.warning("intake forwarder: consumer group missing; creating it again")
                    continue
                # Redis answers but refuses the stream (not a stream, read-only, out of
                # memory, ...): nothing is forwarded until someone fixes it, so say so.
                self.problems.set(PART, f"stream {intake.STREAM}, group {intake.GROUP}: {exc}")
                log.error("intake forwarder: redis refused the intake stream: %s", exc)
                stop.wait(1.0)
            except (RedisError, OSError):
                group_ready = False  # Redis may come back empty
                log.warning("intake forwarder: redis unavailable, retrying")
                stop.wait(1.0)
