"""Pacing SUBSCRIBEs: a token bucket for the rate, and a queue of what falls due when."""

from __future__ import annotations

import heapq


class TokenBucket:
    """`rate` requests a second on average, at most `burst` at once after a quiet spell."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> float:
        """Reserve one request; the seconds to wait before sending it (0: send now)."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class DueQueue:
    """Keys planned for a time; planning a key again replaces its earlier plan."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._planned: dict[str, float] = {}
        self._seq = 0

    def plan(self, key: str, when: float) -> None:
        self._seq += 1
        self._planned[key] = when
        heapq.heappush(self._heap, (when, self._seq, key))

    def planned(self, key: str) -> float | None:
        return self._planned.get(key)

    def pop_due(self, now: float) -> str | None:
        """The next key whose time has come, or None."""
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._planned.get(key) == when:
                del self._planned[key]
                return key
        return None

    def next_at(self) -> float | None:
        """When the earliest plan falls due (maybe one replaced since: then a bit early)."""
        return self._heap[0][0] if self._heap else None
