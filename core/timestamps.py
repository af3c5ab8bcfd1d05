"""Graph's timestamps, in every form seen in the wild."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Graph sends 7 fractional digits (.NET ticks) and sometimes no offset at all
# (e.g. "2024-04-19T23:58:00.4569264"); Python takes at most 6 and needs an offset.
_GRAPH_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$", re.ASCII
)


def parse_graph_datetime(value: str) -> datetime:
    """Parse a Graph timestamp; no offset means UTC. Raises ValueError when it is not one."""
    match = _GRAPH_TIME.match(value.strip())
    if match is None:
        raise ValueError(f"not a Graph timestamp: {value[:40]!r}")
    base, fraction, offset = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    tz = "+00:00" if offset in (None, "Z") else offset
    try:
        return datetime.fromisoformat(f"{base}.{micro}{tz}").astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset that leaves the range
        raise ValueError(f"not a Graph timestamp: {value[:40]!r}") from None
