"""The per-user state machine: sticky profiles, restore, damping, repeats, manual changes."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from core.settings import MappingSettings, RuleSettings
from core.state.profiles import ProfileState
from workers.mapping import LEAVE_UNCHANGED, Decision, RuleSet, compile_rules
from workers.profile_state import (
    enters_sticky,
    keep_shown,
    set_manual,
    step,
    take_reported,
    tick,
)

HOLD = 15.0
MEETING = Decision("Teams Meeting", sticky=True)
AVAILABLE = Decision("Available")
BUSY = Decision("Busy")

PASCOM = compile_rules(MappingSettings(preset="pascom"))
GLOCOM = compile_rules(MappingSettings(preset="glocom"))
SIMPLE_WITH_OFFLINE = compile_rules(
    MappingSettings(
        preset="simple", rules=[RuleSettings(availability=["Offline"], profile="Offline")]
    )
)


def run(
    state: ProfileState, decisions: list[tuple[float, Decision]], hold: float = HOLD
) -> tuple[ProfileState, list[str | None]]:
    """Feed timed decisions; collect what each step asked to apply."""
    applied: list[str | None] = []
    for now, decision in decisions:
        state, profile = step(state, decision, now, hold)
        applied.append(profile)
    return state, applied


def run_presence(
    rules: RuleSet,
    state: ProfileState,
    presences: list[tuple[float, str, str]],
    hold: float = HOLD,
) -> tuple[ProfileState, list[str | None]]:
    """Feed timed Teams presences through a rule set, as the worker does."""
    applied: list[str | None] = []
    for now, availability, activity in presences:
        decision = rules.decide(availability, activity)
        state, profile = step(
            state, decision, now, hold, availability=availability, activity=activity
        )
        applied.append(profile)
    return state, applied


def test_first_decision_applies_at_once() -> None:
    _, applied = run(ProfileState(), [(0, BUSY)])
    assert applied == ["Busy"]


def test_repeated_decision_is_a_no_op() -> None:
    _, applied = run(ProfileState(), [(0, BUSY), (1, BUSY), (2, BUSY)])
    assert applied == ["Busy", None, None]


def test_repeated_decision_keeps_version() -> None:
    state, _ = run(ProfileState(), [(0, BUSY), (1, BUSY)])
    assert state.version == 1


def test_version_grows_with_each_applied_change() -> None:
    state, _ = run(ProfileState(), [(0, BUSY), (1, AVAILABLE), (2, BUSY)])
    assert state.version == 3


def test_leave_unchanged_keeps_non_sticky_profile() -> None:
    state, applied = run(ProfileState(), [(0, BUSY), (1, LEAVE_UNCHANGED)])
    assert (applied, state.current) == (["Busy", None], "Busy")


def test_leave_unchanged_on_fresh_state_applies_nothing() -> None:
    state, applied = run(ProfileState(), [(0, LEAVE_UNCHANGED)])
    assert (applied, state.current) == ([None], None)


def test_entering_sticky_profile_is_immediate_despite_hold() -> None:
    _, applied = run(ProfileState(), [(0, AVAILABLE), (5, MEETING)], hold=HOLD)
    assert applied == ["Available", "Teams Meeting"]


def test_meeting_then_restore_previous_profile() -> None:
    state = ProfileState(current="Home Office", restore_to="Home Office")
    _, applied = run(state, [(0, MEETING), (60, LEAVE_UNCHANGED)], hold=0)
    assert applied == ["Teams Meeting", "Home Office"]


def test_pascom_meeting_then_restore_through_presence() -> None:
    state = ProfileState(current="Home Office", restore_to="Home Office")
    _, applied = run_presence(
        PASCOM,
        state,
        [(0, "Busy", "InAMeeting"), (60, "Available", "Available")],
        hold=0,
    )
    assert applied == ["Teams Meeting", "Home Office"]


def test_meeting_ending_into_named_profile_applies_it() -> None:
    _, applied = run(ProfileState(), [(0, AVAILABLE), (1, MEETING), (60, BUSY)], hold=0)
    assert applied == ["Available", "Teams Meeting", "Busy"]


def test_restore_without_known_previous_profile_uses_default() -> None:
    _, applied = run(ProfileState(), [(0, MEETING), (60, LEAVE_UNCHANGED)], hold=0)
    assert applied == ["Teams Meeting", "Available"]


def test_restore_default_can_be_chosen() -> None:
    state, _ = step(ProfileState(), MEETING, 0, 0)
    _, applied = step(state, LEAVE_UNCHANGED, 60, 0, default_profile="Verfügbar")
    assert applied == "Verfügbar"


def test_sticky_since_records_meeting_start() -> None:
    state, _ = run(ProfileState(), [(0, AVAILABLE), (7, MEETING)])
    assert state.sticky_since == 7


def test_pascom_call_overlapping_meeting_stays_sticky_without_reapplying() -> None:
    state, applied = run_presence(
        PASCOM,
        ProfileState(current="Available", restore_to="Available"),
        [(0, "Busy", "InACall"), (10, "Busy", "InAMeeting"), (20, "Busy", "InACall")],
    )
    assert (applied, state.sticky_since) == (["Teams Meeting", None, None], 0)


def test_glocom_call_meeting_flap_within_hold_is_absorbed() -> None:
    state, applied = run_presence(
        GLOCOM,
        ProfileState(),
        [(0, "Busy", "InACall"), (10, "Busy", "InAMeeting"), (14, "Busy", "InACall")],
        hold=HOLD,
    )
    assert applied == ["On Call", None, None]


def test_glocom_call_meeting_flap_absorbed_leaves_nothing_pending() -> None:
    state, _ = run_presence(
        GLOCOM,
        ProfileState(),
        [(0, "Busy", "InACall"), (10, "Busy", "InAMeeting"), (14, "Busy", "InACall")],
        hold=HOLD,
    )
    assert tick(state, 1000)[1] is None


def test_glocom_call_meeting_flap_without_hold_follows_each_change() -> None:
    _, applied = run_presence(
        GLOCOM,
        ProfileState(),
        [(0, "Busy", "InACall"), (10, "Busy", "InAMeeting"), (14, "Busy", "InACall")],
        hold=0,
    )
    assert applied == ["On Call", "Busy", "On Call"]


def test_automatic_change_during_meeting_is_held_back() -> None:
    state, applied = run(ProfileState(), [(0, MEETING), (10, BUSY)])
    assert (applied, state.current, state.pending_profile) == (
        ["Teams Meeting", None],
        "Teams Meeting",
        "Busy",
    )


def test_short_break_in_meeting_produces_no_change() -> None:
    state, applied = run(
        ProfileState(current="Available", restore_to="Available"),
        [(0, MEETING), (10, LEAVE_UNCHANGED), (12, MEETING)],
    )
    assert (applied, state.pending) == (["Teams Meeting", None, None], False)


def test_meeting_end_applies_after_hold_from_tick() -> None:
    state, _ = run(
        ProfileState(current="Home Office", restore_to="Home Office"),
        [(0, MEETING), (10, LEAVE_UNCHANGED)],
    )
    assert tick(state, 10 + HOLD)[1] == "Home Office"


def test_meeting_end_not_applied_before_hold() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED)])
    assert tick(state, 10 + HOLD - 0.001)[1] is None


def test_tick_applies_pending_change_once() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED)])
    state, _ = tick(state, 100)
    assert tick(state, 200)[1] is None


def test_tick_on_idle_state_is_a_no_op() -> None:
    state = ProfileState(current="Busy", restore_to="Busy", version=4)
    assert tick(state, 100) == (state, None)


def test_due_pending_change_applies_on_next_step() -> None:
    # No tick ran: the next notification, a repeat, still finds the restore due.
    _, applied = run(
        ProfileState(current="Home Office", restore_to="Home Office"),
        [(0, MEETING), (10, LEAVE_UNCHANGED), (40, LEAVE_UNCHANGED)],
    )
    assert applied == ["Teams Meeting", None, "Home Office"]


def test_repeat_does_not_restart_hold() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED), (20, LEAVE_UNCHANGED)])
    assert state.pending_due == 10 + HOLD


def test_new_decision_restarts_hold() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED), (20, BUSY)])
    assert (state.pending_profile, state.pending_due) == ("Busy", 20 + HOLD)


def test_restore_after_held_end_clears_sticky() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED)])
    state, _ = tick(state, 100)
    assert state.sticky is False


def test_offline_blip_shorter_than_hold_changes_nothing() -> None:
    _, applied = run_presence(
        SIMPLE_WITH_OFFLINE,
        ProfileState(),
        [(0, "Available", "Available"), (10, "Offline", "Offline"), (12, "Available", "Available")],
    )
    assert applied == ["Available", None, None]


def test_offline_blip_leaves_nothing_pending() -> None:
    state, _ = run_presence(
        SIMPLE_WITH_OFFLINE,
        ProfileState(),
        [(0, "Available", "Available"), (10, "Offline", "Offline"), (12, "Available", "Available")],
    )
    assert tick(state, 1000)[1] is None


def test_offline_that_lasts_applies_after_hold() -> None:
    state, _ = run_presence(
        SIMPLE_WITH_OFFLINE,
        ProfileState(),
        [(0, "Available", "Available"), (10, "Offline", "Offline")],
    )
    assert tick(state, 10 + HOLD)[1] == "Offline"


def test_offline_without_hold_applies_at_once() -> None:
    _, applied = run_presence(
        SIMPLE_WITH_OFFLINE,
        ProfileState(),
        [(0, "Available", "Available"), (10, "Offline", "Offline")],
        hold=0,
    )
    assert applied == ["Available", "Offline"]


@pytest.mark.parametrize("preset", [GLOCOM, compile_rules(MappingSettings(preset="simple"))])
def test_shipped_presets_ignore_offline_blip(preset: RuleSet) -> None:
    state, applied = run_presence(
        preset,
        ProfileState(),
        [(0, "Busy", "Busy"), (10, "Offline", "Offline"), (100, "PresenceUnknown", "")],
        hold=0,
    )
    assert (applied, state.current) == (["Busy", None, None], "Busy")


def test_offline_blip_during_meeting_keeps_meeting() -> None:
    state, applied = run_presence(
        PASCOM,
        ProfileState(current="Available", restore_to="Available"),
        [(0, "Busy", "InAMeeting"), (10, "Offline", "Offline"), (13, "Busy", "InAMeeting")],
    )
    assert (applied, state.current, state.pending) == (
        ["Teams Meeting", None, None],
        "Teams Meeting",
        False,
    )


def test_switching_between_sticky_profiles_keeps_restore_target() -> None:
    call = Decision("On Call", sticky=True)
    _, applied = run(
        ProfileState(current="Home Office", restore_to="Home Office"),
        [(0, call), (10, MEETING), (20, LEAVE_UNCHANGED)],
        hold=0,
    )
    assert applied == ["On Call", "Teams Meeting", "Home Office"]


def test_sticky_decision_on_current_profile_marks_it_sticky_without_applying() -> None:
    state = ProfileState(current="Busy", restore_to="Busy")
    state, applied = step(state, Decision("Busy", sticky=True), 5, HOLD)
    assert (applied, state.sticky_since) == (None, 5)


def test_manual_change_then_meeting_restores_manual_profile() -> None:
    state, _ = run(ProfileState(), [(0, AVAILABLE)])
    state = set_manual(state, "Lunch")
    _, applied = run(state, [(10, MEETING), (70, LEAVE_UNCHANGED)], hold=0)
    assert applied == ["Teams Meeting", "Lunch"]


def test_manual_change_during_meeting_survives_meeting_end() -> None:
    state, _ = run(ProfileState(), [(0, AVAILABLE), (10, MEETING)])
    state = set_manual(state, "Lunch")
    state, applied = run(state, [(70, LEAVE_UNCHANGED)], hold=0)
    assert (applied, state.current) == ([None], "Lunch")


def test_manual_change_cancels_pending_change() -> None:
    state, _ = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED)])
    state = set_manual(state, "Lunch")
    assert tick(state, 1000)[1] is None


def test_manual_change_counts_as_new_version() -> None:
    state, _ = run(ProfileState(), [(0, AVAILABLE)])
    assert set_manual(state, "Lunch").version == 2


def test_manual_report_of_current_profile_keeps_sticky() -> None:
    # The PBX reading back the profile the bridge itself set is not a user's choice.
    state, _ = run(ProfileState(current="Available", restore_to="Available"), [(0, MEETING)])
    assert set_manual(state, "Teams Meeting") == state


def test_manual_change_does_not_make_repeat_decision_reapply() -> None:
    state, _ = run(ProfileState(), [(0, BUSY)])
    state = set_manual(state, "Lunch")
    state, applied = run(state, [(5, BUSY)])
    assert (applied, state.current) == ([None], "Lunch")


def test_negative_hold_acts_as_zero() -> None:
    _, applied = run(ProfileState(), [(0, MEETING), (10, LEAVE_UNCHANGED)], hold=-5)
    assert applied == ["Teams Meeting", "Available"]


def test_step_records_presence() -> None:
    state, _ = step(ProfileState(), MEETING, 0, HOLD, availability="Busy", activity="InAMeeting")
    assert (state.availability, state.activity) == ("Busy", "InAMeeting")


def test_state_round_trips_through_json_mid_hold() -> None:
    state, _ = run_presence(
        PASCOM,
        ProfileState(current="Available", restore_to="Available"),
        [(1.5, "Busy", "InAMeeting"), (10.25, "Available", "Available")],
    )
    assert ProfileState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


def test_state_from_json_continues_where_it_stopped() -> None:
    state, _ = run(ProfileState(current="Lunch", restore_to="Lunch"), [(0, MEETING), (10, BUSY)])
    restored = ProfileState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert tick(restored, 100)[1] == "Busy"


# ---- the user's own PBX profile: read before a sticky profile, reported changes ---------

IN_MEETING = ProfileState(
    current="Teams Meeting", restore_to="Lunch", sticky_since=0.0,
    last_profile="Teams Meeting", last_sticky=True, version=3,
)  # fmt: skip
SHOWING_AVAILABLE = ProfileState(
    current="Available", restore_to="Available", last_profile="Available", version=1
)


@pytest.mark.parametrize(
    ("state", "decision", "enters"),
    [
        (ProfileState(), MEETING, True),
        (SHOWING_AVAILABLE, MEETING, True),
        (SHOWING_AVAILABLE, BUSY, False),  # not sticky
        (SHOWING_AVAILABLE, LEAVE_UNCHANGED, False),
        (SHOWING_AVAILABLE, Decision(None, sticky=True), False),  # names no profile
        (IN_MEETING, MEETING, False),  # already in it
        (IN_MEETING, Decision("On Call", sticky=True), False),  # one sticky to another
        # The user ended the meeting profile on the PBX; Teams repeating "in a meeting" is
        # the same decision, so nothing begins.
        (replace(IN_MEETING, current="Lunch", sticky_since=None), MEETING, False),
    ],
    ids=["fresh", "from-available", "not-sticky", "leave-unchanged", "no-profile",
         "already-sticky", "sticky-to-sticky", "repeat-after-manual"],
)  # fmt: skip
def test_enters_sticky_only_when_a_sticky_profile_begins(
    state: ProfileState, decision: Decision, enters: bool
) -> None:
    assert enters_sticky(state, decision) is enters
    if enters:  # the rule agrees with the machine: this decision makes the state sticky
        assert step(state, decision, 10, HOLD)[0].sticky


@pytest.mark.parametrize(
    ("shown", "own", "restore_to"),
    [
        ("Lunch", frozenset({"Available"}), "Lunch"),  # the user's, unseen by the bridge
        ("Available", frozenset({"Available"}), "Available"),  # our own write read back
        ("Busy", frozenset({"Available", "Busy"}), "Available"),  # an older write of ours
        (None, frozenset({"Available"}), "Available"),  # the PBX cannot tell
        ("Lunch", frozenset(), "Lunch"),  # nothing of ours is on the PBX
    ],
    ids=["users-own", "our-write", "our-older-write", "cannot-tell", "nothing-of-ours"],
)
def test_keep_shown_takes_what_the_pbx_shows_unless_it_is_ours(
    shown: str | None, own: frozenset[str], restore_to: str
) -> None:
    state = keep_shown(SHOWING_AVAILABLE, shown, own)
    assert (state.restore_to, state.current, state.version) == (restore_to, "Available", 1)


@pytest.mark.parametrize(
    ("shown", "hold", "after"),
    [("Lunch", 0, ["Teams Meeting", "Lunch"]), ("Available", 0, ["Teams Meeting", "Available"]),
     ("Lunch", HOLD, ["Teams Meeting", None])],
    ids=["users-own", "our-write", "held"],
)  # fmt: skip
def test_what_the_pbx_showed_comes_back_after_the_meeting(
    shown: str, hold: float, after: list[str | None]
) -> None:
    state = keep_shown(SHOWING_AVAILABLE, shown, frozenset({"Available"}))
    state, applied = run(state, [(10, MEETING), (70, LEAVE_UNCHANGED)], hold=hold)
    assert applied == after
    if hold:
        assert tick(state, 70 + hold)[1] == shown


@pytest.mark.parametrize(
    ("state", "shown", "own", "desired", "current", "sticky"),
    [
        # The user set a profile on the PBX during a meeting: it wins, the meeting is over.
        (IN_MEETING, "Coffee", frozenset({"Teams Meeting"}), "Coffee", "Coffee", False),
        # Our own meeting profile read back: nothing changes, the meeting holds.
        (IN_MEETING, "Teams Meeting", frozenset({"Teams Meeting"}), None, "Teams Meeting", True),
        # An older write of ours arriving late (the meeting is on its way): not the user's.
        (IN_MEETING, "Lunch", frozenset({"Lunch", "Teams Meeting"}), None, "Teams Meeting",
         True),
        # What the state already shows, whoever wrote it: no new version.
        (SHOWING_AVAILABLE, "Available", frozenset(), None, "Available", False),
        # Before Teams ever decided.
        (ProfileState(), "Lunch", frozenset(), "Lunch", "Lunch", False),
    ],
    ids=["users-own", "our-write", "our-older-write", "already-shown", "fresh"],
)  # fmt: skip
def test_take_reported_records_the_users_own_choice_only(
    state: ProfileState,
    shown: str,
    own: frozenset[str],
    desired: str | None,
    current: str,
    sticky: bool,
) -> None:
    after, profile = take_reported(state, shown, own)
    assert (profile, after.current, after.sticky) == (desired, current, sticky)
    assert after.version == state.version + (1 if desired else 0)
    if desired:
        assert after.restore_to == desired


@pytest.mark.parametrize(
    ("also", "desired"),
    [
        # Our Teams Meeting's DND half read back before its presence half: ours.
        (("Teams Meeting", "Busy", "On Call"), None),
        # DND pressed on the phone while we show Available: the user's.
        (("Busy", "On Call"), "Do Not Disturb"),
        ((), "Do Not Disturb"),
    ],
    ids=["fits-ours", "fits-others", "no-matches"],
)
def test_a_report_that_fits_one_of_our_profiles_is_ours(
    also: tuple[str, ...], desired: str | None
) -> None:
    mine = IN_MEETING if desired is None else SHOWING_AVAILABLE
    own = frozenset({mine.current or ""})
    after, profile = take_reported(mine, "Do Not Disturb", own, also)
    assert profile == desired
    assert after.version == mine.version + (1 if desired else 0)


@pytest.mark.parametrize(
    ("rules", "before", "after"),
    [
        (PASCOM, [("Busy", "InAMeeting"), ("Available", "Available")], "Lunch"),
        # Teams decides again: a named profile replaces the user's choice.
        (GLOCOM, [("Busy", "InACall"), ("Away", "Away")], "Away"),
        # A repeat of Teams' last decision is not a new decision: the user's choice stays.
        (GLOCOM, [("Available", "Available")], "Lunch"),
    ],
    ids=["pascom-meeting", "glocom-decides", "glocom-repeat"],
)
def test_a_reported_choice_wins_until_teams_next_decides(
    rules: RuleSet, before: list[tuple[str, str]], after: str
) -> None:
    state, _ = run_presence(rules, ProfileState(), [(0, "Available", "Available")], hold=0)
    state, profile = take_reported(state, "Lunch", frozenset({state.current or ""}))
    assert profile == "Lunch"
    timed = [(10.0 * (i + 1), a, b) for i, (a, b) in enumerate(before)]
    state, _ = run_presence(rules, state, timed, hold=0)
    assert state.current == after
