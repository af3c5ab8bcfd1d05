"""The office-day and steady-rate workloads: deterministic, realistic rates, valid Graph pairs."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from emulator.scenario import Action, Kind, changes_at_rate, office_day

# Teams <-> Graph pairs from Microsoft's manage-presence page, written out independently.
GRAPH_PAIRS = {
    ("Available", "Available"),
    ("Available", "OutOfOffice"),
    ("Busy", "Busy"),
    ("Busy", "InACall"),
    ("Busy", "InAMeeting"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("DoNotDisturb", "Presenting"),
    ("Away", "Away"),
    ("BeRightBack", "BeRightBack"),
    ("Offline", "OffWork"),
}
USERS = [f"user-{n:04d}" for n in range(400)]
HOURS = 8.0


def by_user(actions: list[Action]) -> dict[str, list[Action]]:
    grouped: dict[str, list[Action]] = defaultdict(list)
    for action in actions:
        grouped[action.user_id].append(action)
    return grouped


def test_same_seed_gives_same_day() -> None:
    assert list(office_day(USERS[:50], seed=7)) == list(office_day(USERS[:50], seed=7))


def test_different_seed_gives_different_day() -> None:
    assert list(office_day(USERS[:50], seed=7)) != list(office_day(USERS[:50], seed=8))


def test_adding_a_user_leaves_the_others_unchanged() -> None:
    alone = list(office_day(USERS[:10], seed=3))
    with_more = [a for a in office_day(USERS[:20], seed=3) if a.user_id in USERS[:10]]
    assert with_more == alone


def test_actions_come_in_time_order_within_the_day() -> None:
    times = [action.at for action in office_day(USERS, seed=1)]
    assert times == sorted(times)
    assert times[0] >= 0
    assert times[-1] <= HOURS * 3600 + 600


@pytest.mark.parametrize("rate", [2.0, 6.0, 10.0])
def test_average_rate_is_close_to_requested(rate: float) -> None:
    actions = list(office_day(USERS, changes_per_hour=rate, hours=HOURS, seed=2))
    per_user_hour = len(actions) / len(USERS) / HOURS
    assert rate * 0.85 <= per_user_hour <= rate * 1.15


@pytest.mark.parametrize("rate", [2.0, 6.0, 10.0])
def test_every_pair_is_a_documented_graph_pair(rate: float) -> None:
    pairs = {(a.availability, a.activity) for a in office_day(USERS, changes_per_hour=rate)}
    assert pairs <= GRAPH_PAIRS


def test_every_action_changes_the_users_presence() -> None:
    for actions in by_user(list(office_day(USERS, seed=4))).values():
        pairs = [(a.availability, a.activity) for a in actions]
        assert all(before != after for before, after in zip(pairs, pairs[1:], strict=False))


def test_each_user_signs_in_first_and_out_last() -> None:
    for actions in by_user(list(office_day(USERS, seed=5))).values():
        assert actions[0].kind is Kind.SIGN_IN
        assert actions[-1].kind is Kind.SIGN_OUT
        assert Kind.SIGN_OUT not in {a.kind for a in actions[:-1]}


def test_meetings_start_in_bursts_on_the_hour_and_half_hour() -> None:
    actions = list(office_day(USERS, seed=6))
    joins = [a for a in actions if a.kind is Kind.JOIN_MEETING]
    early = [a for a in joins if a.at % 1800 < 120]
    assert len(early) >= 0.9 * len(joins)
    per_minute = Counter(int(a.at // 60) % 30 for a in actions)
    quiet_minutes = [per_minute[m] for m in range(5, 25)]
    assert per_minute[0] > 2 * max(quiet_minutes)


def test_presenting_happens_only_inside_a_meeting() -> None:
    for actions in by_user(list(office_day(USERS, seed=9))).values():
        in_meeting = False
        for action in actions:
            if action.kind is Kind.JOIN_MEETING:
                in_meeting = True
            elif action.kind is Kind.LEAVE_MEETING:
                in_meeting = False
            elif action.kind in {Kind.START_PRESENTING, Kind.STOP_PRESENTING}:
                assert in_meeting


@pytest.mark.parametrize(
    "kwargs", [{"changes_per_hour": 0.0}, {"changes_per_hour": 50.0}, {"hours": 0.0}]
)
def test_out_of_range_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        office_day(USERS, **kwargs)  # type: ignore[arg-type]


# ---- steady rate --------------------------------------------------------------------------------


def test_steady_rate_yields_exact_count_evenly_spaced() -> None:
    actions = list(changes_at_rate(USERS[:30], per_second=200.0, duration=2.0))
    assert len(actions) == 400
    assert [a.at for a in actions] == pytest.approx([n / 200.0 for n in range(400)])


def test_steady_rate_spreads_changes_evenly_over_users() -> None:
    counts = Counter(a.user_id for a in changes_at_rate(USERS[:30], 100.0, 3.0))
    assert set(counts) == set(USERS[:30])
    assert max(counts.values()) - min(counts.values()) <= 1


def test_steady_rate_changes_are_real_changes_with_graph_pairs() -> None:
    actions = list(changes_at_rate(USERS[:7], 50.0, 10.0, seed=3))
    assert {(a.availability, a.activity) for a in actions} <= GRAPH_PAIRS
    for user_actions in by_user(actions).values():
        pairs = [("Available", "Available")] + [(a.availability, a.activity) for a in user_actions]
        assert all(before != after for before, after in zip(pairs, pairs[1:], strict=False))


def test_steady_rate_is_deterministic_for_a_seed() -> None:
    first = list(changes_at_rate(USERS[:10], 20.0, 1.0, seed=11))
    assert first == list(changes_at_rate(USERS[:10], 20.0, 1.0, seed=11))
    assert first != list(changes_at_rate(USERS[:10], 20.0, 1.0, seed=12))


def test_steady_rate_with_no_users_yields_nothing() -> None:
    assert list(changes_at_rate([], 10.0, 1.0)) == []
