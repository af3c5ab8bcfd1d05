"""A token bucket: how long to wait before the next request may go, at a steady rate."""

from __future__ import annotations


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
