"""Call events waiting for the sink: handed over in order, kept when the sink fails."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from workers.callstate.channels import CallEvent

MAX_OUTBOX = 10_000


class Outbox:
    def __init__(
        self, emit: Callable[[dict[str, Any]], None], counts: Counter[str], log: logging.Logger
    ) -> None:
        """`counts` gains emitted, emit_failures and dropped (the oldest, past MAX_OUTBOX)."""
        self._emit = emit
        self._counts = counts
        self._log = log
        self._events: deque[CallEvent] = deque()

    def __len__(self) -> int:
        return len(self._events)

    def put(self, events: Iterable[CallEvent]) -> None:
        for event in events:
            self._log.info(
                "call event",
                extra={
                    "user": event.user,
                    "call_id": event.call_id,
                    "type": event.type,
                    "reason": event.reason,
                },
            )
            if len(self._events) >= MAX_OUTBOX:
                self._events.popleft()
                self._counts["dropped"] += 1
            self._events.append(event)
        self.flush()

    def flush(self) -> None:
        """One event that fails stays first in line for the next try."""
        while self._events:
            try:
                self._emit(self._events[0].as_item())
            except Exception as exc:  # the sink is someone else's: never let it kill the listener
                self._counts["emit_failures"] += 1
                self._log.warning("call event not handed over", extra={"error": str(exc)})
                return
            self._events.popleft()
            self._counts["emitted"] += 1
