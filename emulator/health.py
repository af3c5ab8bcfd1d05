"""Graph's judgement of a notification endpoint: normal, slow or drop, over 10-minute windows."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

WINDOW = 600.0  # Graph judges endpoints over 10-minute windows


@dataclass
class UrlHealth:
    """Graph's view of one endpoint over the last 10 minutes (emulated)."""

    # (emulated time, over the first-attempt timeout, over the retry timeout)
    samples: deque[tuple[float, bool, bool]] = field(default_factory=deque)
    over_first: int = 0
    over_retry: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0
    delayed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, now: float, slow: bool, very_slow: bool) -> None:
        with self.lock:
            self.samples.append((now, slow, very_slow))
            self.over_first += slow
            self.over_retry += very_slow
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self.samples and self.samples[0][0] < now - WINDOW:
            _, slow, very_slow = self.samples.popleft()
            self.over_first -= slow
            self.over_retry -= very_slow

    def state(self, now: float, min_samples: int, slow_ratio: float, drop_ratio: float) -> str:
        with self.lock:
            self._trim(now)
            count = len(self.samples)
            if count == 0 or count < min_samples:
                return "normal"
            if self.over_retry / count > drop_ratio:
                return "drop"
            if self.over_first / count > slow_ratio:
                return "slow"
            return "normal"
