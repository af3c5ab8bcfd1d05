"""Graph's side of webhooks: batch, POST, retry on emulated time, track slow/drop endpoints.

One `DeliveryEngine` per world (see `engine_for`). Presence changes and lifecycle events become
items; a dispatcher groups pending items per URL into one changeNotificationCollection (at most
`MAX_BATCH`), one POST in flight per URL so order holds, and failed POSTs are retried with
exponential backoff measured on `world.clock` until the horizon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from emulator import faults
from emulator.envelope import CHANGE_TRACKING_APP_ID, Item, collection
from emulator.health import WINDOW, UrlHealth
from emulator.scheduling import Scheduler
from emulator.world import Delivery, Subscription, World, extension

log = logging.getLogger("emulator.delivery")

# Names other modules and tests import from here.
__all__ = [
    "CHANGE_TRACKING_APP_ID",
    "DEFAULTS",
    "Batch",
    "DeliveryEngine",
    "Item",
    "Scheduler",
    "UrlHealth",
    "engine_for",
    "graph_time",
    "setting",
    "shutdown",
]

MAX_BATCH = 100

# world.settings keys read here, with Graph's figures as defaults (seconds unless noted).
DEFAULTS: dict[str, Any] = {
    "delivery_timeout": 3.0,  # first attempt: a 2xx within 3 s counts as delivered
    "delivery_retry_timeout": 10.0,  # retried requests get 10 s
    "delivery_retry_base": 10.0,  # first retry after 10 s, then doubling...
    "delivery_retry_cap": 3600.0,  # ...up to an hour between attempts
    "delivery_horizon": 4 * 3600.0,  # then give up: Graph retries for up to 4 hours
    "delivery_batch_window": 0.005,  # gather changes this long (real time) before a POST
    "delivery_health_min_samples": 10,  # responses needed in a window before judging a URL
    "slow_ratio": 0.10,  # > 10 % over the first timeout: new notifications wait 10 minutes
    "drop_ratio": 0.15,  # > 15 % over the retry timeout: new notifications are dropped
    "deliveries_kept": 10_000,
    "reauthorization_lead": 15 * 60.0,  # reauthorizationRequired this long before expiry
    "reauthorization_every": 15 * 60.0,  # and again at this pace while nothing is done
}


def setting(world: World, name: str) -> Any:
    return world.settings.get(name, DEFAULTS[name])


def graph_time(epoch: float, suffix: str = "Z") -> str:
    """Graph's DateTimeOffset: seven fractional digits, then `Z`, `+00:00` or nothing."""
    whole = time.gmtime(int(epoch))
    ticks = int(round((epoch - int(epoch)) * 10_000_000))
    ticks = min(ticks, 9_999_999)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', whole)}.{ticks:07d}{suffix}"


@dataclass
class Batch:
    url: str
    items: list[Item]
    attempt: int = 1
    body: bytes | None = None  # fixed at the first attempt; retries resend the same bytes
    document: dict[str, Any] | None = None


class DeliveryEngine:
    def __init__(self, world: World) -> None:
        self.world = world
        self.scheduler = Scheduler(world.clock, name="emulator-delivery-timers")
        self._client = httpx.Client(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            follow_redirects=False,
        )
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="emulator-post")
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Item]] = {}
        self._retries: dict[str, deque[Batch]] = {}
        self._in_flight: set[str] = set()
        self._held: dict[str, list[Item]] = {}  # subscription id -> items waiting for a token
        self._reorder: list[Item] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}
        self.health: dict[str, UrlHealth] = {}
        self.dropped: deque[dict[str, Any]] = deque(maxlen=1000)
        self.retries_waiting = 0  # batches whose next attempt is scheduled
        # user id -> subscription ids covering it; kept by emulator.subscriptions.
        self.index: dict[str, set[str]] = {}

    # -- intake -------------------------------------------------------------------------------

    def enqueue(self, item: Item, *, apply_faults: bool = True) -> None:
        if apply_faults and item.kind == "notification":
            action = faults.delivery_action(self.world)
            if action is not None and self._apply_fault(item, action):
                return
        now = self.world.clock.now()
        health = self._health(item.url)
        if item.kind == "notification" and item.first_at >= now - 1e-3:
            # Graph's rules only touch new notifications, not retries or lifecycle events.
            state = self.state(item.url)
            if state == "drop":
                self._drop(item, "endpoint in drop state")
                return
            if state == "slow":
                with health.lock:
                    health.delayed += 1
                item.first_at = now + WINDOW  # counts as new when it comes back
                self.scheduler.at(now + WINDOW, lambda: self.enqueue(item, apply_faults=False))
                return
        with self._cond:
            self._queues.setdefault(item.url, deque()).append(item)
            self._ensure_thread()
            self._cond.notify()

    def _apply_fault(self, item: Item, action: tuple[str, float]) -> bool:
        """Apply a delivery fault; True when the item needs no further handling."""
        kind, value = action
        if kind == "drop":
            self._drop(item, "fault: drop")
            return True
        if kind == "duplicate":
            self.enqueue(item, apply_faults=False)
            self.enqueue(Item(**{**item.__dict__}), apply_faults=False)
            return True
        if kind == "delay":
            due = self.world.clock.now() + value
            self.scheduler.at(due, lambda: self.enqueue(item, apply_faults=False))
            return True
        if kind == "reorder":
            self._reorder.append(item)
            if len(self._reorder) >= int(value):
                group, self._reorder = self._reorder[::-1], []
                # Each as its own POST, newest first, so order is broken across requests too;
                # one after the other, else the pool's threads could race them back in order.
                self._send_in_order([Batch(r.url, [r]) for r in group])
            return True
        return False

    def hold(self, subscription_id: str, item: Item) -> None:
        with self._cond:
            self._held.setdefault(subscription_id, []).append(item)
        horizon = setting(self.world, "delivery_horizon")
        self.scheduler.at(item.first_at + horizon, lambda: self._expire_held(subscription_id))

    def release(self, subscription_id: str) -> None:
        """A reauthorized or renewed subscription gets its held notifications."""
        with self._cond:
            items = self._held.pop(subscription_id, [])
        for item in items:
            self.enqueue(item, apply_faults=False)

    def _expire_held(self, subscription_id: str) -> None:
        horizon = setting(self.world, "delivery_horizon")
        now = self.world.clock.now()
        with self._cond:
            items = self._held.get(subscription_id, [])
            keep = [i for i in items if now - i.first_at < horizon]
            gone = [i for i in items if now - i.first_at >= horizon]
            self._held[subscription_id] = keep
        for item in gone:
            self._drop(item, "held past the horizon")

    # -- dispatch -----------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._dispatch, name="emulator-delivery", daemon=True
            )
            self._thread.start()

    def _ready(self) -> list[str]:
        urls = set(self._queues) | set(self._retries)
        return [
            u
            for u in urls
            if u not in self._in_flight and (self._queues.get(u) or self._retries.get(u))
        ]

    def _dispatch(self) -> None:
        window = float(setting(self.world, "delivery_batch_window"))
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while not self._closed and not self._ready():
                    self._cond.wait(0.5)
                    if not self._ready() and time.monotonic() - idle_since > 5.0:
                        self._thread = None  # idle: let the thread go, restarted on demand
                        return
                if self._closed:
                    return
            if window > 0:
                time.sleep(window)  # let a burst of changes share one POST
            with self._cond:
                batches: list[Batch] = []
                for url in self._ready():
                    retry = self._retries.get(url)
                    if retry:
                        batches.append(retry.popleft())
                    else:
                        queue = self._queues[url]
                        take = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
                        batches.append(Batch(url, take))
                    self._in_flight.add(url)
            for batch in batches:
                self._pool.submit(self._post_and_release, batch)

    def _post_and_release(self, batch: Batch) -> None:
        try:
            self._post(batch)
        except Exception:  # a bug here must not wedge the URL forever
            log.exception("delivery to %s failed unexpectedly", batch.url)
        finally:
            with self._cond:
                self._in_flight.discard(batch.url)
                self._cond.notify()

    def _send_in_order(self, batches: list[Batch]) -> None:
        def post_all() -> None:
            for batch in batches:
                self._post(batch)

        self._pool.submit(post_all)

    def _post(self, batch: Batch) -> None:
        world = self.world
        if batch.body is None:
            batch.items = self._deliverable(batch.items)
            if not batch.items:
                return
            batch.document = collection(self.world, batch.items, self._tokens)
            batch.body = orjson.dumps(batch.document)
        first = batch.attempt == 1
        timeout = setting(world, "delivery_timeout" if first else "delivery_retry_timeout")
        sent_at = world.clock.now()
        started = time.monotonic()
        status: int | None
        timed_out = False
        try:
            response = self._client.post(
                batch.url,
                content=batch.body,
                headers={"content-type": "application/json; charset=utf-8"},
                timeout=timeout,
            )
            status = response.status_code
        except httpx.TimeoutException:
            status, timed_out = None, True
        except httpx.HTTPError:
            status = None  # refused or reset: a failure, but not a slow answer
        elapsed = time.monotonic() - started
        if status is not None and elapsed > timeout:
            status, timed_out = None, True  # answered, but too late to count
        kind = batch.items[0].kind
        self._record(
            Delivery(batch.url, batch.document or {}, batch.attempt, status, sent_at, elapsed, kind)
        )
        health = self._health(batch.url)
        effective = max(elapsed, timeout + 1e-3) if timed_out else elapsed
        health.add(
            world.clock.now(),
            effective > setting(world, "delivery_timeout"),
            effective > setting(world, "delivery_retry_timeout"),
        )
        if status is not None and 200 <= status < 300:
            with health.lock:
                health.delivered += len(batch.items)
            return
        with health.lock:
            health.failed_attempts += 1
        self._schedule_retry(batch)

    def _schedule_retry(self, batch: Batch) -> None:
        world = self.world
        base = float(setting(world, "delivery_retry_base"))
        delay = min(base * 2 ** (batch.attempt - 1), float(setting(world, "delivery_retry_cap")))
        due = world.clock.now() + delay
        first_at = min(i.first_at for i in batch.items)
        if due - first_at > float(setting(world, "delivery_horizon")):
            for item in batch.items:
                self._drop(item, "retry horizon reached")
            return
        batch.attempt += 1
        with self._cond:
            self.retries_waiting += 1

        def requeue() -> None:
            with self._cond:
                self.retries_waiting -= 1
                self._retries.setdefault(batch.url, deque()).append(batch)
                self._ensure_thread()
                self._cond.notify()

        self.scheduler.at(due, requeue)

    def _deliverable(self, items: list[Item]) -> list[Item]:
        """Drop items of deleted or expired subscriptions; hold those whose token expired."""
        now = self.world.clock.now()
        keep: list[Item] = []
        for item in items:
            with self.world.lock:
                sub = self.world.subscriptions.get(item.subscription_id)
            if item.kind == "lifecycle":
                keep.append(item)
            elif sub is None or sub.expiration <= now:
                continue
            elif sub.token_expires_at and sub.token_expires_at <= now:
                # Graph pauses (not drops) delivery until the subscription is reauthorized.
                self.hold(sub.id, item)
            else:
                keep.append(item)
        return keep

    # -- bookkeeping --------------------------------------------------------------------------

    def _health(self, url: str) -> UrlHealth:
        with self._cond:
            return self.health.setdefault(url, UrlHealth())

    def _drop(self, item: Item, reason: str) -> None:
        self._health(item.url).dropped += 1
        self.dropped.append(
            {
                "url": item.url,
                "subscriptionId": item.subscription_id,
                "reason": reason,
                "at": self.world.clock.now(),
                "item": item.payload,
            }
        )

    def _record(self, delivery: Delivery) -> None:
        keep = int(setting(self.world, "deliveries_kept"))
        with self.world.lock:
            self.world.deliveries.append(delivery)
            if len(self.world.deliveries) > keep + keep // 10:
                del self.world.deliveries[: len(self.world.deliveries) - keep]

    def busy(self) -> bool:
        """True while items are queued or a POST is in flight (scheduled retries excluded)."""
        with self._cond:
            return (
                bool(self._in_flight) or any(self._queues.values()) or any(self._retries.values())
            )

    def state(self, url: str) -> str:
        """normal, slow (new notifications wait 10 minutes) or drop (they are lost)."""
        return self._health(url).state(
            self.world.clock.now(),
            int(setting(self.world, "delivery_health_min_samples")),
            float(setting(self.world, "slow_ratio")),
            float(setting(self.world, "drop_ratio")),
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.scheduler.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


def engine_for(world: World) -> DeliveryEngine:
    return extension(world, "delivery.engine", lambda: DeliveryEngine(world))


def shutdown(world: World) -> None:
    """Stop the world's delivery threads (EmulatorServer calls this when it stops)."""
    store: dict[str, Any] = world.__dict__.get("_extensions", {})
    engine = store.pop("delivery.engine", None)
    if isinstance(engine, DeliveryEngine):
        engine.close()


def subscription_alive(sub: Subscription | None, now: float) -> bool:
    return sub is not None and sub.expiration > now
