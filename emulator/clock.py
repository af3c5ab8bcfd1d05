"""A controllable clock: real time plus an offset that tests move forward."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[threading.Event] = []

    def now(self) -> float:
        """Seconds since the epoch, emulated."""
        return time.time() + self._offset

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
            listeners = list(self._listeners)
        for event in listeners:
            event.set()  # wake timers so they re-check what is due

    def subscribe(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._listeners.append(event)
        return event
