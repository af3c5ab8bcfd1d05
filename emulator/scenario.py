"""Presence workloads: an "office day" for demos and tests, a steady rate for benchmarks.

Pure and seeded: the same ids and seed give the same actions, in time order, on any machine.
Rates follow a planning estimate, not a Microsoft figure: 2-10 presence changes per user per
working hour, with bursts at :00 and :30 when meetings start.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

HOUR = 3600.0
MINUTE = 60.0
SLOT = 30 * MINUTE  # meetings start on the hour and the half hour

# Above this an office day stops looking like one; use `changes_at_rate` for load.
MAX_CHANGES_PER_HOUR = 12.0
# Share of slots a user spends in a meeting, and how often they present in one (assumptions).
MEETING_SLOT_SHARE = 0.35
PRESENTING_SHARE = 0.2
# Changes per hour that meetings contribute at most: 2 slots x share x (join+leave) x presenting.
_MAX_MEETING_CHANGES = 2 * MEETING_SLOT_SHARE * 2 * (1 + PRESENTING_SHARE)


class Kind(StrEnum):
    SIGN_IN = "sign_in"
    JOIN_MEETING = "join_meeting"
    START_PRESENTING = "start_presenting"
    STOP_PRESENTING = "stop_presenting"
    LEAVE_MEETING = "leave_meeting"
    START_CALL = "start_call"
    END_CALL = "end_call"
    AWAY = "away"
    BE_RIGHT_BACK = "be_right_back"
    BUSY = "busy"
    DO_NOT_DISTURB = "do_not_disturb"
    BACK = "back"
    SIGN_OUT = "sign_out"


# (availability, activity) Graph reports for each action; pairs from Teams' documented mapping.
PAIR_OF: dict[Kind, tuple[str, str]] = {
    Kind.SIGN_IN: ("Available", "Available"),
    Kind.JOIN_MEETING: ("Busy", "InAMeeting"),
    Kind.START_PRESENTING: ("DoNotDisturb", "Presenting"),
    Kind.STOP_PRESENTING: ("Busy", "InAMeeting"),
    Kind.LEAVE_MEETING: ("Available", "Available"),
    Kind.START_CALL: ("Busy", "InACall"),
    Kind.END_CALL: ("Available", "Available"),
    Kind.AWAY: ("Away", "Away"),
    Kind.BE_RIGHT_BACK: ("BeRightBack", "BeRightBack"),
    Kind.BUSY: ("Busy", "Busy"),
    Kind.DO_NOT_DISTURB: ("DoNotDisturb", "DoNotDisturb"),
    Kind.BACK: ("Available", "Available"),
    Kind.SIGN_OUT: ("Offline", "OffWork"),
}

# Ad-hoc episodes between meetings: (start kind, end kind, weight, mean minutes).
_EPISODES: tuple[tuple[Kind, Kind, float, float], ...] = (
    (Kind.START_CALL, Kind.END_CALL, 0.45, 4.0),
    (Kind.AWAY, Kind.BACK, 0.25, 10.0),  # idle for 5 min, then away until back
    (Kind.BE_RIGHT_BACK, Kind.BACK, 0.15, 5.0),
    (Kind.BUSY, Kind.BACK, 0.10, 15.0),
    (Kind.DO_NOT_DISTURB, Kind.BACK, 0.05, 20.0),
)
_EPISODE_WEIGHTS = [weight for _, _, weight, _ in _EPISODES]
_MEAN_EPISODE_HOURS = sum(w * m for _, _, w, m in _EPISODES) / sum(_EPISODE_WEIGHTS) / 60.0


@dataclass(frozen=True, slots=True)
class Action:
    at: float  # seconds from the scenario's start
    user_id: str
    kind: Kind
    availability: str
    activity: str


def _action(at: float, user_id: str, kind: Kind) -> Action:
    availability, activity = PAIR_OF[kind]
    return Action(at, user_id, kind, availability, activity)


def office_day(
    user_ids: Sequence[str],
    *,
    changes_per_hour: float = 6.0,
    hours: float = 8.0,
    seed: int = 0,
) -> Iterator[Action]:
    """Every user's working day, merged in time order; time 0 is the top of an hour."""
    if not 0 < changes_per_hour <= MAX_CHANGES_PER_HOUR:
        raise ValueError(f"changes_per_hour must be in (0, {MAX_CHANGES_PER_HOUR}]")
    if hours <= 0:
        raise ValueError("hours must be positive")
    days = (_user_day(user_id, changes_per_hour, hours, seed) for user_id in user_ids)
    return heapq.merge(*days, key=lambda action: action.at)


def _user_day(user_id: str, rate: float, hours: float, seed: int) -> Iterator[Action]:
    # One generator per user, seeded from (seed, user): adding a user never changes the others.
    rng = random.Random(f"{seed}:{user_id}")
    end = hours * HOUR
    meeting_changes = min(_MAX_MEETING_CHANGES, 0.8 * rate)
    slot_share = meeting_changes / (2 * 2 * (1 + PRESENTING_SHARE))
    meetings = _meetings(rng, end, slot_share)
    # Ad-hoc episodes fill this user's free time so the day lands near `rate` changes per hour.
    busy_hours = sum(leave - join for join, leave in meetings) / HOUR
    free_hours = max(0.1, hours - busy_hours)
    meeting_changes = len(meetings) * 2 * (1 + PRESENTING_SHARE)
    episodes = max(0.05 * hours, (rate * hours - meeting_changes - 2) / 2)
    mean_gap_hours = max(1 / 60, free_hours / episodes - _MEAN_EPISODE_HOURS)

    clock = rng.uniform(0, 20 * MINUTE)  # people sign in over the first 20 minutes
    yield _action(clock, user_id, Kind.SIGN_IN)
    for start, stop in [*meetings, (end, end)]:
        while True:
            clock += rng.expovariate(1 / (mean_gap_hours * HOUR))
            if clock >= start - MINUTE:
                break
            begin, finish, _, mean_minutes = rng.choices(_EPISODES, _EPISODE_WEIGHTS)[0]
            length = min(rng.expovariate(1 / (mean_minutes * MINUTE)) + 20, start - clock - 30)
            yield _action(clock, user_id, begin)
            clock += length
            yield _action(clock, user_id, finish)
        if start >= end:
            break
        yield from _meeting(rng, user_id, start, stop)
        clock = stop
    yield _action(end + rng.uniform(0, 10 * MINUTE), user_id, Kind.SIGN_OUT)


def _meetings(rng: random.Random, end: float, slot_share: float) -> list[tuple[float, float]]:
    """(join, leave) times: a join lands within a minute or two of :00 or :30."""
    meetings: list[tuple[float, float]] = []
    slot = SLOT  # nobody has a meeting while signing in
    while slot + SLOT <= end:
        if rng.random() >= slot_share:
            slot += SLOT
            continue
        slots = 2 if rng.random() < 0.3 and slot + 2 * SLOT <= end else 1
        join = slot + min(rng.expovariate(1 / 40.0), 4 * MINUTE)
        # Meetings end a few minutes early or run a little over; the next slot stays free.
        leave = slot + slots * SLOT - 5 * MINUTE + rng.uniform(-2 * MINUTE, 4 * MINUTE)
        meetings.append((join, leave))
        slot += (slots + 1) * SLOT
    return meetings


def _meeting(rng: random.Random, user_id: str, join: float, leave: float) -> Iterator[Action]:
    yield _action(join, user_id, Kind.JOIN_MEETING)
    if rng.random() < PRESENTING_SHARE:
        start = rng.uniform(join + MINUTE, join + (leave - join) / 2)
        stop = rng.uniform(start + MINUTE, leave - MINUTE)
        yield _action(start, user_id, Kind.START_PRESENTING)
        yield _action(stop, user_id, Kind.STOP_PRESENTING)
    yield _action(leave, user_id, Kind.LEAVE_MEETING)


# Each user walks this cycle in the steady benchmark; consecutive entries always differ.
_RATE_CYCLE: tuple[Kind, ...] = (
    Kind.START_CALL,
    Kind.END_CALL,
    Kind.JOIN_MEETING,
    Kind.START_PRESENTING,
    Kind.STOP_PRESENTING,
    Kind.LEAVE_MEETING,
    Kind.DO_NOT_DISTURB,
    Kind.BACK,
    Kind.AWAY,
    Kind.BACK,
)


def changes_at_rate(
    user_ids: Sequence[str], per_second: float, duration: float, *, seed: int = 0
) -> Iterator[Action]:
    """Evenly spaced changes, users in a shuffled round robin so each change is a real change."""
    if per_second <= 0 or duration < 0:
        raise ValueError("per_second must be positive and duration non-negative")
    if not user_ids:
        return
    order = list(user_ids)
    random.Random(seed).shuffle(order)
    steps = [0] * len(order)
    interval = 1.0 / per_second
    for n in itertools.count():
        at = n * interval
        if at >= duration:
            return
        index = n % len(order)
        kind = _RATE_CYCLE[steps[index] % len(_RATE_CYCLE)]
        steps[index] += 1
        yield _action(at, order[index], kind)
