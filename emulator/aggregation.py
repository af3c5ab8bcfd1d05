"""Microsoft's presence aggregation, as pure functions of a user's sessions and the time.

Rules (Learn, "Manage presence state using the Microsoft Graph API"): user-preferred presence
beats every session; among sessions DoNotDisturb > Busy > Available > Away; an app session set
Available decays to Available/AvailableInactive after 5 minutes and to Away/Away after another 5;
with no live session the user is Offline/Offline, preferred presence included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulator.world import PresenceSession, UserPresence

MINUTE = 60.0
HOUR = 3600.0
DAY = 24 * HOUR

SESSION_MIN = 5 * MINUTE
SESSION_MAX = 4 * HOUR
SESSION_DEFAULT = 5 * MINUTE
INACTIVE_AFTER = 5 * MINUTE  # Available -> Available/AvailableInactive
AWAY_AFTER = 10 * MINUTE  # -> Away/Away

# The only pairs setPresence accepts (OutOfOffice and InAMeeting come from the calendar).
SESSION_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("Busy", "InAConferenceCall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    }
)
PREFERRED_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "Busy"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("BeRightBack", "BeRightBack"),
        ("Away", "Away"),
        ("Offline", "OffWork"),
    }
)

# Precedence among sessions. Microsoft names DoNotDisturb > Busy > Available > Away; the rest is
# our reading: the idle variants sit just under their active form, BeRightBack is a declared
# short absence so it outranks Away, and a client that appears Offline loses to everything.
AVAILABILITY_RANK: dict[str, int] = {
    "DoNotDisturb": 80,
    "Busy": 70,
    "BusyIdle": 60,
    "Available": 50,
    "AvailableIdle": 40,
    "BeRightBack": 30,
    "Away": 20,
    "Offline": 10,
    "PresenceUnknown": 0,
}

OFFLINE: tuple[str, str] = ("Offline", "Offline")

_KNOWN = {v.lower(): v for pair in SESSION_PAIRS | PREFERRED_PAIRS for v in pair} | {
    v.lower(): v for v in AVAILABILITY_RANK
}
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class PresenceRuleError(ValueError):
    """A request the presence API refuses with 400."""


@dataclass
class AppSession(PresenceSession):
    """A session that remembers when it was last set, so Available can decay."""

    set_at: float = 0.0
    decays: bool = True  # app sessions decay; Teams-client sessions manage idleness themselves


def canonical(value: str) -> str:
    """Graph matches availability/activity case-insensitively; answer in PascalCase."""
    return _KNOWN.get(value.lower(), value)


def parse_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration such as `PT5M`, `PT1H30M` or `P1D`."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None or text.strip().upper() in ("P", "PT"):
        raise PresenceRuleError(f"expirationDuration {text!r} is not an ISO-8601 duration")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * DAY + parts["h"] * HOUR + parts["m"] * MINUTE + parts["s"]


def session_lifetime(duration: str | None) -> float:
    """setPresence's expirationDuration: PT5M to PT4H, default five minutes."""
    if duration is None:
        return SESSION_DEFAULT
    seconds = parse_duration(duration)
    if not SESSION_MIN <= seconds <= SESSION_MAX:
        raise PresenceRuleError("expirationDuration must be between PT5M and PT4H")
    return seconds


def preferred_lifetime(pair: tuple[str, str], duration: str | None) -> float:
    """Preferred presence lasts 1 day for DoNotDisturb/Busy and 7 days otherwise by default."""
    if duration is not None:
        seconds = parse_duration(duration)
        if seconds <= 0:
            raise PresenceRuleError("expirationDuration must be positive")
        return seconds
    return DAY if pair[0] in ("DoNotDisturb", "Busy") else 7 * DAY


def checked_pair(
    availability: object, activity: object, allowed: frozenset[tuple[str, str]]
) -> tuple[str, str]:
    if not isinstance(availability, str) or not isinstance(activity, str):
        raise PresenceRuleError("availability and activity are required")
    pair = (canonical(availability), canonical(activity))
    if pair not in allowed:
        raise PresenceRuleError(f"{availability}/{activity} is not a supported combination")
    return pair


def session_state(session: PresenceSession, now: float) -> tuple[str, str] | None:
    """The state a session contributes at `now`, or None once it has expired."""
    if session.expires_at is not None and now >= session.expires_at:
        return None
    pair = (session.availability, session.activity)
    if isinstance(session, AppSession) and session.decays and pair == ("Available", "Available"):
        idle = now - session.set_at
        if idle >= AWAY_AFTER:
            return ("Away", "Away")
        if idle >= INACTIVE_AFTER:
            return ("Available", "AvailableInactive")
    return pair


def _rank(state: tuple[str, str]) -> int:
    return AVAILABILITY_RANK.get(state[0], 0)


def aggregate(presence: UserPresence, now: float) -> tuple[str, str]:
    """The (availability, activity) Graph reports for a user at `now`."""
    live = [
        (state, session)
        for session in presence.sessions.values()
        if (state := session_state(session, now)) is not None
    ]
    if not live:
        return OFFLINE
    if presence.preferred is not None and (
        presence.preferred_expires_at is None or now < presence.preferred_expires_at
    ):
        return presence.preferred
    # Ties at the same availability go to the most recently set session (then the id, for
    # determinism): the newest signal from the user is the best guess.
    best = max(
        live,
        key=lambda item: (
            _rank(item[0]),
            item[1].set_at if isinstance(item[1], AppSession) else 0.0,
            item[1].session_id,
        ),
    )
    return best[0]


def next_change_at(presence: UserPresence, now: float) -> float | None:
    """The earliest future moment at which `aggregate` may change without any request."""
    moments: list[float] = []
    for session in presence.sessions.values():
        if session.expires_at is not None and session.expires_at > now:
            moments.append(session.expires_at)
        decaying = isinstance(session, AppSession) and session.decays
        if decaying and (session.availability, session.activity) == ("Available", "Available"):
            set_at = session.set_at if isinstance(session, AppSession) else now
            moments.extend(t for t in (set_at + INACTIVE_AFTER, set_at + AWAY_AFTER) if t > now)
    if presence.preferred_expires_at is not None and presence.preferred_expires_at > now:
        moments.append(presence.preferred_expires_at)
    return min(moments) if moments else None


def drop_expired(presence: UserPresence, now: float) -> None:
    """Forget sessions and preferred presence whose time is up."""
    for key in [k for k, s in presence.sessions.items() if session_state(s, now) is None]:
        del presence.sessions[key]
    if presence.preferred_expires_at is not None and now >= presence.preferred_expires_at:
        presence.preferred = None
        presence.preferred_expires_at = None
