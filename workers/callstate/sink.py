"""Where a call-state source's items go: the intake stream, as if `/pbx/events` had them;
its profile reports go to the worker's queue (`core.queue.enqueue_profile_reports`).

Each item is one MULTI: the webhook's append script (dedup, stream entry, counters) and the
source's record of reported calls, so the record never disagrees with what was handed over.
From the stream on, the worker treats it like any PBX event (workers/calls.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis import Redis

from core.queue import ProfileReport, enqueue_profile_reports
from core.state import callstate, intake


class IntakeSink:
    """`emit` for one tenant's source; raises when Redis is away (the source keeps the item)."""

    def __init__(
        self, redis: Redis, tenant: str, source: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = redis
        self.tenant = tenant
        self.source = source
        self._clock = clock

    def __call__(self, item: dict[str, Any]) -> None:
        accepted = intake.Accepted(tenant=self.tenant, kind="pbx", item=dict(item))
        counter = callstate.counter_field(self.tenant, self.source, str(item["type"]))
        pipe = self.redis.pipeline(transaction=True)
        intake.queue_append(pipe, [accepted], {counter: 1})
        callstate.queue_report(pipe, self.tenant, self.source, item, self._clock())
        pipe.execute()

    def reported(self) -> list[tuple[str, str, float]]:
        """The calls handed over and not ended yet: where a new listener starts from."""
        return callstate.reported(self.redis, self.tenant, self.source)


class ProfileSink:
    """`report` for one tenant's source: the users' own profiles go to the worker's
    `process_profile_reports` job, which tells them from our own writes read back."""

    def __init__(self, redis: Redis, tenant: str) -> None:
        self.redis = redis
        self.tenant = tenant

    def __call__(self, reports: list[ProfileReport]) -> None:
        enqueue_profile_reports(self.redis, self.tenant, reports)
