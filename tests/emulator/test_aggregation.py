"""Microsoft's presence aggregation rules, as pure functions."""

from __future__ import annotations

import pytest

from emulator import aggregation as agg
from emulator.world import PresenceSession, UserPresence

NOW = 1_000_000.0


def session(
    sid: str,
    availability: str,
    activity: str,
    *,
    expires_in: float | None = 3600,
    set_ago: float = 0.0,
    decays: bool = True,
) -> agg.AppSession:
    return agg.AppSession(
        sid,
        availability,
        activity,
        None if expires_in is None else NOW + expires_in,
        set_at=NOW - set_ago,
        decays=decays,
    )


def presence_of(
    *sessions: PresenceSession,
    preferred: tuple[str, str] | None = None,
    preferred_expires_in: float | None = None,
) -> UserPresence:
    return UserPresence(
        sessions={s.session_id: s for s in sessions},
        preferred=preferred,
        preferred_expires_at=None if preferred_expires_in is None else NOW + preferred_expires_in,
    )


def test_no_session_is_offline() -> None:
    assert agg.aggregate(presence_of(), NOW) == ("Offline", "Offline")


def test_preferred_without_session_is_offline() -> None:
    assert agg.aggregate(presence_of(preferred=("Busy", "Busy")), NOW) == ("Offline", "Offline")


def test_preferred_beats_sessions() -> None:
    p = presence_of(session("a", "DoNotDisturb", "Presenting"), preferred=("Away", "Away"))
    assert agg.aggregate(p, NOW) == ("Away", "Away")


def test_expired_preferred_falls_back_to_sessions() -> None:
    p = presence_of(
        session("a", "Busy", "InACall"), preferred=("Away", "Away"), preferred_expires_in=-1
    )
    assert agg.aggregate(p, NOW) == ("Busy", "InACall")


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (("DoNotDisturb", "Presenting"), ("Busy", "InACall"), ("DoNotDisturb", "Presenting")),
        (("Busy", "InACall"), ("Available", "Available"), ("Busy", "InACall")),
        (("Available", "Available"), ("Away", "Away"), ("Available", "Available")),
        (("BeRightBack", "BeRightBack"), ("Away", "Away"), ("BeRightBack", "BeRightBack")),
        (("Away", "Away"), ("Offline", "OffWork"), ("Away", "Away")),
        (("DoNotDisturb", "Presenting"), ("Away", "Away"), ("DoNotDisturb", "Presenting")),
    ],
)
def test_session_precedence(
    first: tuple[str, str], second: tuple[str, str], winner: tuple[str, str]
) -> None:
    for order in ((first, second), (second, first)):
        p = presence_of(session("a", *order[0]), session("b", *order[1]))
        assert agg.aggregate(p, NOW) == winner


def test_same_availability_goes_to_the_newest_session() -> None:
    p = presence_of(
        session("a", "Busy", "InACall", set_ago=60),
        session("b", "Busy", "InAConferenceCall", set_ago=10),
    )
    assert agg.aggregate(p, NOW) == ("Busy", "InAConferenceCall")


def test_expired_session_does_not_count() -> None:
    p = presence_of(session("a", "Busy", "InACall", expires_in=-1))
    assert agg.aggregate(p, NOW) == ("Offline", "Offline")


@pytest.mark.parametrize(
    ("idle", "expected"),
    [
        (0, ("Available", "Available")),
        (299, ("Available", "Available")),
        (300, ("Available", "AvailableInactive")),
        (599, ("Available", "AvailableInactive")),
        (600, ("Away", "Away")),
    ],
)
def test_app_session_available_decays(idle: float, expected: tuple[str, str]) -> None:
    p = presence_of(session("a", "Available", "Available", set_ago=idle))
    assert agg.aggregate(p, NOW) == expected


def test_teams_client_session_does_not_decay() -> None:
    p = presence_of(session("teams:1", "Available", "Available", set_ago=3600, decays=False))
    assert agg.aggregate(p, NOW) == ("Available", "Available")


def test_busy_app_session_does_not_decay() -> None:
    p = presence_of(session("a", "Busy", "InACall", set_ago=3000))
    assert agg.aggregate(p, NOW) == ("Busy", "InACall")


@pytest.mark.parametrize("pair", sorted(agg.SESSION_PAIRS))
def test_session_pairs_accepted(pair: tuple[str, str]) -> None:
    assert agg.checked_pair(pair[0].lower(), pair[1].upper(), agg.SESSION_PAIRS) == pair


@pytest.mark.parametrize(
    "pair",
    [
        ("Busy", "InAMeeting"),
        ("Available", "OutOfOffice"),
        ("Busy", "Busy"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("BeRightBack", "BeRightBack"),
        ("Offline", "OffWork"),
    ],
)
def test_session_pairs_refused(pair: tuple[str, str]) -> None:
    with pytest.raises(agg.PresenceRuleError):
        agg.checked_pair(*pair, agg.SESSION_PAIRS)


@pytest.mark.parametrize("pair", sorted(agg.PREFERRED_PAIRS))
def test_preferred_pairs_accepted(pair: tuple[str, str]) -> None:
    assert agg.checked_pair(*pair, agg.PREFERRED_PAIRS) == pair


@pytest.mark.parametrize(
    "pair", [("Busy", "InACall"), ("DoNotDisturb", "Presenting"), ("Offline", "Offline")]
)
def test_preferred_pairs_refused(pair: tuple[str, str]) -> None:
    with pytest.raises(agg.PresenceRuleError):
        agg.checked_pair(*pair, agg.PREFERRED_PAIRS)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(None, 300), ("PT5M", 300), ("PT1H", 3600), ("PT4H", 14400), ("PT1H30M", 5400)],
)
def test_session_lifetime(text: str | None, seconds: float) -> None:
    assert agg.session_lifetime(text) == seconds


@pytest.mark.parametrize("text", ["PT4M59S", "PT4H1S", "P1D", "5 minutes", "PT"])
def test_session_lifetime_refused(text: str) -> None:
    with pytest.raises(agg.PresenceRuleError):
        agg.session_lifetime(text)


@pytest.mark.parametrize(
    ("pair", "seconds"),
    [
        (("DoNotDisturb", "DoNotDisturb"), 86400),
        (("Busy", "Busy"), 86400),
        (("Away", "Away"), 7 * 86400),
    ],
)
def test_preferred_default_lifetime(pair: tuple[str, str], seconds: float) -> None:
    assert agg.preferred_lifetime(pair, None) == seconds


def test_next_change_is_the_earliest_of_decay_and_expiry() -> None:
    p = presence_of(session("a", "Available", "Available", expires_in=3600, set_ago=100))
    assert agg.next_change_at(p, NOW) == NOW + 200


def test_next_change_none_without_timers() -> None:
    p = presence_of(session("teams:1", "Busy", "Busy", expires_in=None, decays=False))
    assert agg.next_change_at(p, NOW) is None
