"""Running a `blf` source in a test: its own thread and loop, and a sink that records."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from workers.callstate.blf import BlfCallSource

USERS = {"200": "alice", "201": "bob"}
WAIT = 15.0


class Sink:
    """What the source hands over, in order; also the bridge's view of who is on which call."""

    def __init__(self) -> None:
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ledger: dict[str, set[str]] = {}

    def __call__(self, item: dict[str, Any]) -> None:
        calls = self.ledger.setdefault(item["user"], set())
        if item["type"] == "call_started":
            calls.add(item["call_id"])
        else:
            calls.discard(item["call_id"])
        self.items.put(item)

    def take(self, count: int) -> list[tuple[str, str, str]]:
        """The next `count` items as (type, user, call id), sorted: users come in any order."""
        got = [self.items.get(timeout=WAIT) for _ in range(count)]
        return sorted((i["type"], i["user"], i["call_id"]) for i in got)

    def known_calls(self) -> dict[str, list[str]]:
        return {user: sorted(ids) for user, ids in self.ledger.items() if ids}


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Listening:
    """Runs a source in its own thread and event loop, as a process would; stops it after."""

    def __init__(self, source: BlfCallSource) -> None:
        self.source = source
        self._thread = threading.Thread(target=lambda: asyncio.run(source.run()), daemon=True)

    def __enter__(self) -> BlfCallSource:
        self._thread.start()
        return self.source

    def __exit__(self, *exc: object) -> None:
        # Like a killed process: no un-SUBSCRIBE, the PBX keeps the subscriptions for now.
        self.source.stop()
        self._thread.join(10)
        assert not self._thread.is_alive()


def resynced(source: BlfCallSource, count: int = len(USERS)) -> Callable[[], bool]:
    """True once `count` subscriptions delivered their first full state."""
    return lambda: source.counts["resyncs"] >= count
