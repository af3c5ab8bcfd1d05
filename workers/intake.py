"""Forwards intake stream entries to RQ jobs, many items per job, many jobs per round trip."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue

from core import keys
from core.intake import decode_entry
from core.queue import (
    INTAKE_BATCH,
    ITEMS_PER_JOB,
    JOB_LIFECYCLE,
    JOB_NOTIFICATIONS,
    JOB_PBX_EVENTS,
    QUEUE_GRAPH,
    QUEUE_LIFECYCLE,
    QUEUE_PRESENCE,
    job_kwargs,
    queue,
)

log = logging.getLogger("workers.intake")

CLAIM_IDLE_MS = 60_000  # an entry read by a worker that died this long ago is taken over
ROUTES = {
    "notification": (QUEUE_PRESENCE, JOB_NOTIFICATIONS),
    "lifecycle": (QUEUE_LIFECYCLE, JOB_LIFECYCLE),
    "pbx": (QUEUE_GRAPH, JOB_PBX_EVENTS),
}


class IntakeForwarder:
    def __init__(self, redis: Redis, consumer: str, window_ms: int = 0) -> None:
        self.redis = redis
        self.consumer = consumer
        self.window_ms = window_ms
        self.queues: dict[str, Queue] = {}
        self._claim_cursor = "0-0"

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(keys.INTAKE_STREAM, keys.INTAKE_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run_once(self, block_ms: int = 1000) -> int:
        """Forward what is waiting (or what a dead worker left); returns items forwarded."""
        cursor, claimed, *_ = self.redis.xautoclaim(
            keys.INTAKE_STREAM,
            keys.INTAKE_GROUP,
            self.consumer,
            min_idle_time=CLAIM_IDLE_MS,
            start_id=self._claim_cursor,
            count=INTAKE_BATCH,
        )
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        entries = list(claimed)
        if not entries:
            read = self.redis.xreadgroup(
                keys.INTAKE_GROUP,
                self.consumer,
                {keys.INTAKE_STREAM: ">"},
                count=INTAKE_BATCH,
                block=block_ms,
            )
            entries = _entries(read)
            if entries and self.window_ms and len(entries) < INTAKE_BATCH:
                # Coalesce a burst: more ids per job means fewer Graph reads.
                time.sleep(self.window_ms / 1000)
                more = self.redis.xreadgroup(
                    keys.INTAKE_GROUP,
                    self.consumer,
                    {keys.INTAKE_STREAM: ">"},
                    count=INTAKE_BATCH - len(entries),
                )
                entries += _entries(more)
        return self.forward([(eid, fields) for eid, fields in entries if fields])

    def forward(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        if not entries:
            return 0
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for _, fields in entries:
            for entry in decode_entry(fields):
                grouped[(entry["tenant"], entry["kind"])].append(entry)
        pipe = self.redis.pipeline(transaction=True)
        for (tenant, kind), items in grouped.items():
            queue_name, job = ROUTES.get(kind, ROUTES["notification"])
            q = self.queues.setdefault(queue_name, queue(self.redis, queue_name))
            datas = [
                Queue.prepare_data(
                    job, args=(tenant, items[i : i + ITEMS_PER_JOB]), **_data_kwargs()
                )
                for i in range(0, len(items), ITEMS_PER_JOB)
            ]
            q.enqueue_many(datas, pipeline=pipe)
        ids = [eid for eid, _ in entries]
        pipe.xack(keys.INTAKE_STREAM, keys.INTAKE_GROUP, *ids)
        pipe.xdel(keys.INTAKE_STREAM, *ids)
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


def _data_kwargs() -> dict[str, Any]:
    kwargs = job_kwargs()
    return {
        "timeout": kwargs["job_timeout"],
        "result_ttl": kwargs["result_ttl"],
        "failure_ttl": kwargs["failure_ttl"],
        "retry": kwargs["retry"],
    }


def _entries(read: Any) -> list[Any]:
    """Flatten XREADGROUP's [(stream, [(id, fields), ...]), ...] reply."""
    return [e for _, stream_entries in read or [] for e in stream_entries]
