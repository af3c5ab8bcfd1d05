"""The intake forwarder: stream entries to RQ jobs, many items per job, many jobs per round trip.

Lifecycle items go to the clock's inbox instead (`core.queue.INTAKE_ROUTES`); the intake
records themselves are `core.state.intake`.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from core.queue import INTAKE_BATCH, route
from core.state import intake

log = logging.getLogger(__name__)


class IntakeForwarder:
    def __init__(self, redis: Redis, consumer: str, window_ms: int = 0) -> None:
        self.redis = redis
        self.consumer = consumer
        self.window_ms = window_ms
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
        self.ensure_group()
        while not stop.is_set():
            try:
                self.run_once()
            except (RedisError, OSError):
                log.warning("intake forwarder: redis unavailable, retrying")
                stop.wait(1.0)
