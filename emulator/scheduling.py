"""Callbacks due at emulated times, run on one thread that wakes when the clock is advanced."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from emulator.clock import Clock

log = logging.getLogger("emulator.delivery")


class Scheduler:
    """Callbacks due at emulated times; wakes when they are due or when the clock is advanced."""

    def __init__(self, clock: Clock, name: str) -> None:
        self._clock = clock
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wake = clock.subscribe()
        self._thread: threading.Thread | None = None
        self._closed = False

    def at(self, when: float, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            heapq.heappush(self._heap, (when, next(self._seq), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            due: list[Callable[[], None]] = []
            with self._lock:
                if self._closed:
                    return
                if not self._heap and time.monotonic() - idle_since > 5.0:
                    self._thread = None  # nothing scheduled: let the thread go
                    return
                now = self._clock.now()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                wait = min(self._heap[0][0] - now, 1.0) if self._heap else 1.0
            for callback in due:
                try:
                    callback()
                except Exception:
                    log.exception("scheduled callback failed")
            if due:
                idle_since = time.monotonic()
                continue
            # Real time runs at the clock's pace, so waiting the remaining real seconds works;
            # an advance() sets the event and we re-check at once.
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
        self._wake.set()
