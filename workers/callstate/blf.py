"""The `blf` call-state source: SIP dialog-event subscriptions (RFC 4235, the BLF keys' feed).

One SUBSCRIBE `Event: dialog` per watched extension, all from one UDP socket, paced by a
token bucket (`subscribes_per_second`), so that 10,000 extensions start and refresh without
a burst. Each subscription is refreshed before it lapses; a 481, a `terminated` NOTIFY or a
refresh that cannot be delivered before expiry starts a new one. The first NOTIFY of every
new subscription is full state and replaces what was known of that extension, so a call
that ended while the source was not listening ends then. A DialogTracker turns dialogs
into `call_started`/`call_ended` per PBX user; a maximum call length is the last guard.
Run exactly one per PBX (the caller holds the leader lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from core.blf_options import BlfSourceOptions
from core.errors import ConfigError, PbxError, options_error
from workers.callstate.dialog_info import CONTENT_TYPE, Applied, DialogInfoError, parse_dialog_info
from workers.callstate.dialogs import DialogTracker
from workers.callstate.outbox import Outbox
from workers.callstate.pacing import DueQueue, TokenBucket
from workers.callstate.subscription import (
    GONE,
    REFUSED_REASONS,
    TRANSIENT,
    Subscription,
    int_or_none,
    subscription_state,
)
from workers.pbx.sip_agent import SipAgent
from workers.pbx.sip_wire import SipRequest, SipResponse, aor_of, digest_authorization, tag_of

log = logging.getLogger("workers.callstate.blf")

TICK = 1.0  # how often the call-length guard runs while nothing else happens


class BlfCallSource:
    """Create it, `await run()`; `stop()` may be called from any thread."""

    def __init__(
        self,
        options: BlfSourceOptions | Mapping[str, Any],
        secret: SecretStr | None,
        users: Mapping[str, str],
        emit: Callable[[dict[str, Any]], None],
        *,
        known_calls: Mapping[str, Iterable[str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`users` maps extensions to PBX users; `known_calls` (PBX user -> call ids the
        bridge holds: `core.state.calls.read_all`) lets a restarted source end the calls it
        reported before and that ended meanwhile (ids of other sources are left alone).
        `secret` is the digest password, None when the PBX does not challenge.
        """
        if isinstance(options, BlfSourceOptions):
            self.options = options  # validated with the settings
        else:
            try:
                self.options = BlfSourceOptions.model_validate(dict(options))
            except ValidationError as exc:
                raise options_error(exc, "callstate.blf") from None
        if not users:
            raise ConfigError(["callstate.blf: no extension to watch (pbx_users[].extension)"])
        self._secret = secret
        self._clock = clock
        self.counts: Counter[str] = Counter()
        self._users = dict(users)
        self._known: dict[str, set[str]] = {u: set(ids) for u, ids in (known_calls or {}).items()}
        self.tracker = self._new_tracker()
        self._outbox = Outbox(emit, self.counts, log)
        self._subs = {ext: Subscription(ext, aor_of(ext, self.options.domain)) for ext in users}
        self._by_dialog: dict[tuple[str, str], str] = {}  # (Call-ID, our tag) -> extension
        self._due = DueQueue()  # extension -> when its next SUBSCRIBE goes (monotonic)
        self._agent: SipAgent | None = None
        self._contact = ""  # host:port of our Contact and Via, once `host` is resolved
        self._destination: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._stop_requested = False
        self._min_expires = 0

    def __repr__(self) -> str:
        o = self.options
        return f"BlfCallSource({o.host}:{o.port}/{o.transport}, {len(self._subs)} extensions)"

    def _new_tracker(self) -> DialogTracker:
        return DialogTracker(
            self._users,
            busy_from=self.options.busy_from,
            max_call_seconds=self.options.max_call_seconds,
            known_calls=self._known,
            now=self._clock(),
        )

    def restore(self, calls: Iterable[tuple[str, str, float]]) -> None:
        """Calls an earlier listener reported (user, call id, since), added to `known_calls`;
        call before run()."""
        for user, call_id, _since in calls:
            self._known.setdefault(user, set()).add(call_id)
        self.tracker = self._new_tracker()

    @property
    def connected(self) -> bool:
        """The PBX holds at least one of our subscriptions (a refused extension is not down)."""
        return any(s.established for s in self._subs.values())

    def active_calls(self) -> int:
        return sum(len(ids) for ids in self.tracker.active().values())

    def flush(self) -> None:
        """Hand over again what emit refused before (Redis was away), in order."""
        self._outbox.flush()

    def subscribed(self) -> list[str]:
        """Extensions whose subscription is established."""
        return sorted(e for e, s in self._subs.items() if s.established)

    def stop(self) -> None:
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe every extension, keep the subscriptions, report calls until stop()."""
        self._loop = asyncio.get_running_loop()
        self._stop, self._wake = asyncio.Event(), asyncio.Event()
        if self._stop_requested:
            return
        o = self.options
        self._agent = await SipAgent.open(
            o.bind_host, o.bind_port, self._on_request, t1=o.t1, timeout=o.timeout
        )
        self._outbox.put(self.tracker.take_orphans())
        now = time.monotonic()
        for ext in self._subs:
            self._plan(ext, now)
        bucket = TokenBucket(o.subscribes_per_second, max(1.0, o.subscribes_per_second), now)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                self._outbox.put(self.tracker.expire(self._clock()))
                self._outbox.flush()
                due = self._next_due(time.monotonic())
                if due is None:
                    await self._sleep(self._until_next(time.monotonic()))
                    continue
                wait = bucket.take(time.monotonic())
                if wait > 0 and await self._sleep(wait, wakeable=False):
                    break
                sub = self._subs[due]
                sub.busy = True  # now, not when the task starts: it must not be picked twice
                task = asyncio.ensure_future(self._subscribe(sub))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in list(tasks):
                task.cancel()
            for task in list(tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._agent.close()

    def _plan(self, ext: str, when: float) -> None:
        self._due.plan(ext, when)
        if self._wake is not None:
            self._wake.set()

    def _next_due(self, now: float) -> str | None:
        while (ext := self._due.pop_due(now)) is not None:
            if not self._subs[ext].busy:  # else the SUBSCRIBE in flight plans what follows
                return ext
        return None

    def _until_next(self, now: float) -> float:
        at = self._due.next_at()
        return TICK if at is None else min(TICK, max(0.0, at - now))

    async def _sleep(self, seconds: float, *, wakeable: bool = True) -> bool:
        """Wait; True when stopped. A new plan wakes it early unless `wakeable` is off."""
        assert self._stop is not None and self._wake is not None
        self._wake.clear()
        waits = {asyncio.ensure_future(self._stop.wait())}
        if wakeable:
            waits.add(asyncio.ensure_future(self._wake.wait()))
        _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return self._stop.is_set()

    # --- SUBSCRIBE ---------------------------------------------------------------------------

    async def _subscribe(self, sub: Subscription) -> None:
        now = time.monotonic()
        if sub.established and now >= sub.expires_at:
            self._drop_dialog(sub)  # refreshes failed until it lapsed: start again
        fresh = not sub.established
        if fresh:
            self._new_dialog(sub)
        try:
            response = await self._send_subscribe(sub)
        except (TimeoutError, OSError) as exc:
            self.counts["timeouts"] += 1
            log.warning(
                "blf subscribe got no answer",
                extra={"extension": sub.extension, "error": str(exc) or "timeout"},
            )
            self._retry_later(sub, fresh)
            return
        except PbxError as exc:  # a challenge we cannot answer (another digest algorithm)
            self._refuse(sub, str(exc))
            return
        finally:
            sub.busy = False
        status = response.status
        if 200 <= status < 300:
            self._established(sub, response, fresh)
        elif status == 423 and self._learn_min_expires(response, sub.sent_expires):
            self.counts["interval_too_brief"] += 1
            self._plan(sub.extension, time.monotonic())
        elif not fresh and status in GONE:
            self.counts["gone"] += 1  # the PBX forgot it (restart, expiry): anew
            self.counts["resubscribes"] += 1
            self._drop_dialog(sub)
            self._plan(sub.extension, time.monotonic())
        elif status in TRANSIENT or status >= 500:
            self.counts["failures"] += 1
            self._retry_later(sub, fresh)
        else:
            self._refuse(sub, f"{status} {response.reason}")  # 403, 404, 489, a bad secret

    def _refuse(self, sub: Subscription, why: str) -> None:
        """The dialogs of this extension cannot be known: its calls end; ask again later."""
        self.counts["refused"] += 1
        log.warning("blf subscribe refused", extra={"extension": sub.extension, "reason": why})
        self._drop_dialog(sub)
        self._outbox.put(self.tracker.forget(sub.extension))
        self._plan(sub.extension, time.monotonic() + self.options.retry_max)

    def _established(self, sub: Subscription, response: SipResponse, fresh: bool) -> None:
        self.counts["subscribes" if fresh else "refreshes"] += 1
        if sub.key not in self._by_dialog:
            self._plan(sub.extension, time.monotonic())  # terminated while we asked: anew
            return
        if fresh:
            sub.take_answer(response)
        sub.failures = 0
        granted = response.header_int("expires") or self._expires()
        if granted <= 0:
            self._drop_dialog(sub)  # the notifier ended it at once
            self._plan(sub.extension, time.monotonic() + self.options.retry_initial)
            return
        now = time.monotonic()
        sub.expires_at = now + granted
        if sub.want_full:
            sub.want_full = False
            self._plan(sub.extension, now)  # a refresh brings the full state a gap asked for
            return
        # Jitter spreads the refreshes of subscriptions made in one burst.
        self._plan(
            sub.extension, now + granted * self.options.refresh_at * random.uniform(0.9, 1.0)
        )

    def _retry_later(self, sub: Subscription, fresh: bool) -> None:
        o = self.options
        delay = min(o.retry_max, o.retry_initial * 2.0 ** min(sub.failures, 20))
        delay = delay / 2 + random.uniform(0, delay / 2)
        sub.failures += 1
        when = time.monotonic() + delay
        if not fresh:
            when = min(when, sub.expires_at)  # a refresh is still worth trying until then
        self._plan(sub.extension, when)

    async def _send_subscribe(self, sub: Subscription) -> SipResponse:
        response = await self._transact(sub, None)
        if response.status in (401, 407) and self._secret is not None:
            self.counts["auth_challenges"] += 1
            www = response.status == 401
            challenge = response.header("www-authenticate" if www else "proxy-authenticate")
            if challenge is not None:
                credentials = digest_authorization(
                    challenge,
                    method="SUBSCRIBE",
                    uri=sub.target,
                    username=self.options.auth_user or self.options.from_user,
                    password=self._secret.get_secret_value(),
                )
                header = "Authorization" if www else "Proxy-Authorization"
                response = await self._transact(sub, (header, credentials))
        return response

    async def _resolve(self) -> tuple[str, int]:
        """Look `host` up once (off the loop); an OSError is retried like a lost answer."""
        if self._destination is None:
            o = self.options
            assert self._loop is not None and self._agent is not None
            infos = await self._loop.getaddrinfo(
                o.host, o.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
            address = (str(infos[0][4][0]), int(infos[0][4][1]))
            host = o.contact_host or _local_address(o.bind_host, address)
            self._contact = f"{host}:{self._agent.port}"
            self._destination = address
        return self._destination

    async def _transact(self, sub: Subscription, auth: tuple[str, str] | None) -> SipResponse:
        o = self.options
        assert self._agent is not None
        destination = await self._resolve()
        headers = sub.request_headers(
            from_uri=f"sip:{o.from_user}@{o.domain}",
            contact=f"sip:{o.from_user}@{self._contact}",
            expires=self._expires(),
            user_agent=o.user_agent,
            auth=auth,
        )
        return await self._agent.request(
            destination, "SUBSCRIBE", sub.target, headers, sent_by=self._contact
        )

    def _new_dialog(self, sub: Subscription) -> None:
        self._drop_dialog(sub)
        sub.start()
        self._by_dialog[sub.key] = sub.extension

    def _drop_dialog(self, sub: Subscription) -> None:
        """Forget the dialog: its later NOTIFYs get 481, which makes the notifier drop it."""
        self._by_dialog.pop(sub.key, None)
        sub.to_tag = None

    def _learn_min_expires(self, response: SipResponse, sent: int) -> bool:
        """RFC 6665 4.1.2.1: retry a 423 with at least the notifier's Min-Expires."""
        min_expires = response.header_int("min-expires")
        if min_expires is None or min_expires <= sent or min_expires > 86400:
            return False
        self._min_expires = max(self._min_expires, min_expires)
        return True

    def _expires(self) -> int:
        return max(self.options.expires, self._min_expires)

    # --- NOTIFY ------------------------------------------------------------------------------

    def _on_request(self, request: SipRequest) -> tuple[int, str]:
        if request.method == "OPTIONS":
            return 200, "OK"
        if request.method != "NOTIFY":
            return 405, "Method Not Allowed"
        ext = self._by_dialog.get(
            (request.header("call-id") or "", tag_of(request.header("to")) or "")
        )
        if ext is None:
            self.counts["unknown_notifies"] += 1
            return 481, "Subscription Does Not Exist"
        if (request.header("event") or "").partition(";")[0].strip().lower() != "dialog":
            return 489, "Bad Event"
        sub = self._subs[ext]
        self.counts["notifies"] += 1
        sub.take_notify(request)
        self._read_body(sub, request)
        self._read_state(sub, request.header("subscription-state") or "")
        return 200, "OK"

    def _read_body(self, sub: Subscription, request: SipRequest) -> None:
        kind = (request.header("content-type") or "").partition(";")[0].strip().lower()
        if request.body.strip() and kind not in ("", CONTENT_TYPE):
            self.counts["bad_bodies"] += 1
            return
        try:
            doc = parse_dialog_info(request.body)
        except DialogInfoError as exc:
            self.counts["bad_bodies"] += 1
            log.warning(
                "blf notify body refused", extra={"extension": sub.extension, "error": str(exc)}
            )
            return
        first_full = not sub.view.has_full_state
        applied = sub.view.apply(doc)
        if applied is Applied.STALE:
            self.counts["stale_notifies"] += 1
            return
        reason = ""
        if applied is Applied.FULL and first_full:
            self.counts["resyncs"] += 1
            reason = "resync"
        self._outbox.put(
            self.tracker.update(sub.extension, sub.view.dialogs.values(), self._clock(), reason)
        )
        if applied is Applied.GAP:
            # RFC 4235 4.1.2: a NOTIFY was lost; a refresh brings full state.
            self.counts["gaps"] += 1
            if sub.busy:
                sub.want_full = True
            else:
                self._plan(sub.extension, time.monotonic())

    def _read_state(self, sub: Subscription, header: str) -> None:
        value, args = subscription_state(header)
        if value != "terminated":
            expires = int_or_none(args.get("expires"))
            if expires is not None and sub.established:
                sub.expires_at = time.monotonic() + expires
                refresh = time.monotonic() + expires * self.options.refresh_at
                if refresh < (self._due.planned(sub.extension) or float("inf")) and not sub.busy:
                    self._plan(sub.extension, refresh)
            return
        reason = args.get("reason", "").lower()
        self.counts["terminated"] += 1
        self._drop_dialog(sub)
        retry_after = int_or_none(args.get("retry-after"))
        if reason in REFUSED_REASONS:
            self._outbox.put(self.tracker.forget(sub.extension))
            delay = float(retry_after or self.options.retry_max)
        elif reason in ("probation", "giveup"):
            delay = float(retry_after or self.options.retry_initial)
        else:  # deactivated, timeout, none: subscribe again at once
            self.counts["resubscribes"] += 1
            delay = float(retry_after or 0)
        if not sub.busy:
            self._plan(sub.extension, time.monotonic() + delay)


def _local_address(bind_host: str, destination: tuple[str, int]) -> str:
    """The bound address, or (bound to all) the local address the OS routes to it by."""
    if bind_host not in ("0.0.0.0", ""):  # noqa: S104
        return bind_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(destination)  # sends nothing: only picks the route
        return str(probe.getsockname()[0])
