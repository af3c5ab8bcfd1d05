"""The `ami` call-state source: a long-lived AMI listener that reports calls per PBX user.

It logs in for `call` events only, follows Newchannel/Newstate/Hangup through a
ChannelTracker and hands `call_started`/`call_ended` items to `emit`. Every (re)connect
starts with `CoreShowChannels`: what ended during the gap is ended, what started is
started; events that Asterisk wrote before that snapshot's answer are superseded by it.
A Ping keeps a quiet connection honest, and a maximum call length is the last guard.
Run exactly one per Asterisk (the caller holds the leader lock).

Given a ProfileWatch (the tenant's adapter is `asterisk`), it also follows the events a
user's own DND or presence change raises, in the same `call` class, and hands the profile
they show to `report` once a burst of events is read (workers/callstate/profile_watch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from core.asterisk_options import AmiSourceOptions
from core.errors import ConfigError, options_error
from core.queue import ProfileReport
from workers.callstate.channels import CallEvent, ChannelTracker
from workers.callstate.profile_watch import ProfileWatch
from workers.pbx.ami import AmiConnectionError, AmiRefused, AsyncAmiClient

log = logging.getLogger("workers.callstate.ami")

# Newchannel, Newstate, Hangup, and DeviceStateChange, PresenceStateChange: all `call` class
EVENT_MASK = "call"
MAX_OUTBOX = 10_000


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential with jitter: half the step fixed, half random, so hosts do not stampede."""
    step = min(maximum, initial * 2.0 ** min(attempt, 30))
    return step / 2 + random.uniform(0, step / 2)


class AmiCallSource:
    """Create it, `await run()`; `stop()` may be called from any thread."""

    def __init__(
        self,
        options: AmiSourceOptions | Mapping[str, Any],
        secret: SecretStr | None,
        users: Mapping[str, str],
        emit: Callable[[dict[str, Any]], None],
        *,
        profiles: ProfileWatch | None = None,
        report: Callable[[list[ProfileReport]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`users` maps extensions (or endpoints such as `PJSIP/alice-desk`) to PBX users;
        `report` takes what `profiles` makes of the users' own changes."""
        if isinstance(options, AmiSourceOptions):
            self.options = options  # validated with the settings
        else:
            try:
                self.options = AmiSourceOptions.model_validate(dict(options))
            except ValidationError as exc:
                raise options_error(exc, "callstate.ami") from None
        if secret is None:
            raise ConfigError(["callstate.ami.secret: the AMI user's secret is required"])
        self._secret = secret
        self._emit = emit
        self._clock = clock
        self.tracker = ChannelTracker(
            users,
            busy_from=self.options.busy_from,
            max_call_seconds=self.options.max_call_seconds,
            ignore_prefixes=self.options.ignore_channels,
        )
        self._outbox: deque[CallEvent] = deque()
        self._profiles = profiles if report is not None else None
        self._report = report
        self._reports: dict[str, ProfileReport] = {}  # per user the latest, until handed over
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self.connected = False
        # connects, resyncs, disconnects, emitted, emit_failures, dropped, login_failures,
        # profile_reports, report_failures
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        o = self.options
        return f"AmiCallSource({o.username}@{o.host}:{o.port})"

    def restore(self, calls: Iterable[tuple[str, str, float]]) -> None:
        """Calls an earlier listener reported (user, call id, since); call before run()."""
        self.tracker.restore(calls)

    def active_calls(self) -> int:
        return sum(len(ids) for ids in self.tracker.active().values())

    def stop(self) -> None:
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        """Listen until stop(): connect, resync, follow events; reconnect with backoff."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            return
        attempt = 0
        while not self._stop.is_set():
            connected_at: float | None = None
            try:
                client = await AsyncAmiClient.connect(
                    self.options, self._secret.get_secret_value(), events=EVENT_MASK
                )
            except (AmiConnectionError, AmiRefused) as exc:
                self.counts["login_failures" if isinstance(exc, AmiRefused) else "unreachable"] += 1
                log.warning("ami connect failed", extra={"source": repr(self), "error": str(exc)})
            else:
                connected_at = time.monotonic()
                try:
                    await self._follow(client)
                except (AmiConnectionError, AmiRefused) as exc:
                    log.warning(
                        "ami connection lost", extra={"source": repr(self), "error": str(exc)}
                    )
                finally:
                    self.connected = False
                    self.counts["disconnects"] += 1
                    await client.close()
            if self._stop.is_set():
                break
            if (
                connected_at is not None
                and time.monotonic() - connected_at >= self.options.stable_after
            ):
                attempt = 0
            delay = backoff_delay(attempt, self.options.backoff_initial, self.options.backoff_max)
            attempt += 1
            await self._idle(delay)

    async def _follow(self, client: AsyncAmiClient) -> None:
        snapshot = await client.action("CoreShowChannels")
        self.connected = True
        self.counts["connects"] += 1
        self.counts["resyncs"] += 1
        self._queue(self.tracker.reconcile([e.as_dict() for e in snapshot.events], self._clock()))
        assert self._stop is not None
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                next_event = asyncio.ensure_future(
                    client.next_event(timeout=self.options.ping_interval)
                )
                done, _ = await asyncio.wait(
                    {next_event, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_event not in done:
                    next_event.cancel()
                    with contextlib.suppress(asyncio.CancelledError, AmiConnectionError):
                        await next_event
                    return
                item = next_event.result()
                now = self._clock()
                if item is None:
                    await client.action("Ping")  # raises when the connection is dead
                else:
                    seq, message = item
                    event = message.as_dict()
                    if seq > snapshot.seq:  # earlier events are already in the snapshot
                        self._queue(self.tracker.on_event(event, now))
                    if self._profiles is not None:
                        # A profile change is no call: the channel snapshot does not cover it.
                        self._hold(self._profiles.on_event(event, now))
                self._queue(self.tracker.expire(now))
                if self._reports and not client.events_waiting:
                    self.flush_reports()
        finally:
            stop_wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_wait

    async def _idle(self, seconds: float) -> None:
        """Wait out a backoff; the call-length guard and the outbox keep working meanwhile."""
        assert self._stop is not None
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            self._queue(self.tracker.expire(self._clock()))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(remaining, 1.0))

    def _queue(self, events: list[CallEvent]) -> None:
        for event in events:
            log.info(
                "ami call event",
                extra={
                    "user": event.user,
                    "call_id": event.call_id,
                    "type": event.type,
                    "reason": event.reason,
                },
            )
            if len(self._outbox) >= MAX_OUTBOX:
                self._outbox.popleft()
                self.counts["dropped"] += 1
            self._outbox.append(event)
        self._flush_calls()

    def _hold(self, report: ProfileReport | None) -> None:
        if report is not None:
            log.info("ami profile report", extra={"user": report.user, "profile": report.profile})
            self._reports[report.user] = report

    def flush_reports(self) -> None:
        """Hand the held profile reports over at once; kept for the next try when that fails."""
        if not self._reports or self._report is None:
            return
        reports = list(self._reports.values())
        try:
            self._report(reports)
        except Exception as exc:  # Redis is away: the latest per user is still held
            self.counts["report_failures"] += 1
            log.warning("ami profile reports not handed over", extra={"error": str(exc)})
            return
        self._reports.clear()
        self.counts["profile_reports"] += len(reports)

    def flush(self) -> None:
        """Hand over what is held: profile reports, then call events."""
        self.flush_reports()
        self._flush_calls()

    def _flush_calls(self) -> None:
        """Hand events over in order; one that fails stays first in line for the next try."""
        while self._outbox:
            try:
                self._emit(self._outbox[0].as_item())
            except Exception as exc:  # the sink is someone else's: never let it kill the listener
                self.counts["emit_failures"] += 1
                log.warning("ami call event not handed over", extra={"error": str(exc)})
                return
            self._outbox.popleft()
            self.counts["emitted"] += 1
