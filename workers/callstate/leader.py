"""One tenant's call-state source, run only while this process holds the source's leader lock.

Several hosts may run the call-state process; per tenant and source one leads (one AMI
session, each call reported once), the others wait and take over within the lock's TTL when
it dies. Every term starts a fresh source from the record of calls reported and not ended,
so its first resync ends what ended while nobody listened. While leading, the lock is renewed
every third of its TTL, the source's counts go to the cluster-wide counters and its status
is written with the lock's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core.state import callstate, intake
from core.state.callstate import SourceStatus
from core.state.coordination import LeaderLock
from workers.callstate.sink import IntakeSink
from workers.callstate.sources import CallSource, Emit

log = logging.getLogger("workers.callstate")
NOT_COUNTED = {"emitted"}  # the sink counts call_started / call_ended with the item itself


class Listener:
    def __init__(
        self,
        redis: Redis,
        tenant: str,
        source: str,
        make_source: Callable[[Emit], CallSource],
        *,
        lock_seconds: float,
        host: str,
    ) -> None:
        self.redis = redis
        self.tenant = tenant
        self.source_name = source
        self._make = make_source
        self.lock_seconds = lock_seconds
        self.tick = lock_seconds / 3
        self.host = host
        self.lock = LeaderLock(redis, callstate.lock_name(tenant, source), lock_seconds)
        self.source: CallSource | None = None  # while leading
        self._flushed: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"Listener({self.tenant}/{self.source_name})"

    async def run(self, stop: asyncio.Event) -> None:
        """Lead whenever the lock is free, until `stop`; then hand the lock back."""
        while not stop.is_set():
            try:
                leading = self.lock.acquire()
            except (RedisError, OSError):
                log.warning("callstate: redis unavailable", extra={"listener": repr(self)})
                leading = False
            if leading:
                await self._lead(stop)
            if not stop.is_set():
                await _wait(stop, None, self.tick)
        with contextlib.suppress(RedisError, OSError):  # else it expires by itself
            self.lock.release()

    async def _lead(self, stop: asyncio.Event) -> None:
        sink = IntakeSink(self.redis, self.tenant, self.source_name)
        try:
            reported = sink.reported()
            source = self._make(sink)  # a blf source reads the calls the bridge holds
        except (RedisError, OSError):
            log.warning("callstate: cannot read reported calls", extra={"listener": repr(self)})
            return
        source.restore(reported)
        source.counts["leads"] += 1
        self.source, self._flushed = source, Counter()
        log.info(
            "callstate: leading",
            extra={"listener": repr(self), "host": self.host, "restored": len(reported)},
        )
        task = asyncio.create_task(source.run())
        renewed = time.monotonic()
        try:
            while not stop.is_set() and not task.done():
                await _wait(stop, task, self.tick)
                if stop.is_set() or task.done():
                    break
                try:
                    if not self.lock.acquire():
                        log.warning("callstate: leader lock lost", extra={"listener": repr(self)})
                        break
                    renewed = time.monotonic()
                    self._report(source)
                except (RedisError, OSError):
                    # Past the lock's lifetime another host may lead: stop listening.
                    if time.monotonic() - renewed >= self.lock_seconds - self.tick:
                        log.warning("callstate: cannot renew the lock, stepping down",
                                    extra={"listener": repr(self)})  # fmt: skip
                        break
        finally:
            source.stop()
            try:
                await task
            except Exception:  # a bug in the source: log it, lead again with a fresh one
                log.exception("callstate: source failed", extra={"listener": repr(self)})
            with contextlib.suppress(RedisError, OSError):
                if self.lock.acquire():  # still ours: say it is down, count the last figures
                    self._report(source)
            self.source = None

    def _report(self, source: CallSource) -> None:
        """Counts since the last report, and the status (expiring with the lock)."""
        source.flush()  # an item Redis refused earlier goes now, not at the next event
        current = Counter({k: v for k, v in source.counts.items() if k not in NOT_COUNTED})
        delta = current - self._flushed
        fields = {callstate.counter_field(self.tenant, self.source_name, k): n
                  for k, n in delta.items()}  # fmt: skip
        intake.add_counters(self.redis, fields)
        self._flushed = current
        status = SourceStatus(self.host, source.connected, source.active_calls(), time.time())
        callstate.save_status(self.redis, self.tenant, self.source_name, status, self.lock_seconds)


async def _wait(stop: asyncio.Event, task: asyncio.Future[Any] | None, seconds: float) -> None:
    """Until `stop`, the end of `task` or `seconds`, whichever comes first."""
    stopped = asyncio.ensure_future(stop.wait())
    waiting: set[asyncio.Future[Any]] = {stopped}
    if task is not None:
        waiting.add(task)
    try:
        await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
