"""DialogTracker: dialogs per extension -> call_started/call_ended per PBX user."""

from __future__ import annotations

import pytest

from tests.sip_recorded import ASTERISK_200, ASTERISK_201
from workers.callstate.channels import CallEvent
from workers.callstate.dialog_info import Dialog, DialogView, parse_dialog_info
from workers.callstate.dialogs import DialogTracker, call_id_of, owned_call_ids

USERS = {"200": "alice", "201": "bob", "2001": "alice"}  # alice has a desk and a mobile


def confirmed(dialog_id: str, call_id: str | None = None) -> Dialog:
    return Dialog(dialog_id, "confirmed", call_id=call_id)


def started(user: str, call_id: str, reason: str = "answer") -> CallEvent:
    return CallEvent("call_started", user, call_id, reason)


def ended(user: str, call_id: str, reason: str = "hangup") -> CallEvent:
    return CallEvent("call_ended", user, call_id, reason)


def test_call_ids_are_the_sip_call_id_else_extension_and_dialog() -> None:
    assert call_id_of("200", confirmed("d1", "abc@host")) == "blf:abc@host"
    assert call_id_of("200", confirmed("200")) == "blf:200/200"
    assert owned_call_ids(["blf:x", "1796149370.5", "blf:200/200"]) == ["blf:x", "blf:200/200"]


def test_a_confirmed_dialog_is_a_call_until_it_ends() -> None:
    tracker = DialogTracker(USERS)
    assert tracker.update("201", [Dialog("201", "early")], 0) == []
    assert tracker.update("201", [confirmed("201")], 1) == [started("bob", "blf:201/201")]
    assert tracker.update("201", [confirmed("201")], 2) == []
    assert tracker.active() == {"bob": ["blf:201/201"]}
    assert tracker.update("201", [Dialog("201", "terminated")], 3) == [ended("bob", "blf:201/201")]
    assert tracker.active() == {}


@pytest.mark.parametrize("state", ["trying", "proceeding", "early"])
def test_with_busy_from_ringing_a_ringing_dialog_counts(state: str) -> None:
    tracker = DialogTracker(USERS, busy_from="ringing")
    ringing = Dialog("d", state, call_id="c")  # type: ignore[arg-type]
    assert tracker.update("201", [ringing], 0) == [started("bob", "blf:c", "ringing")]
    assert tracker.update("201", [confirmed("d", "c")], 1) == []
    assert tracker.update("201", [], 2) == [ended("bob", "blf:c")]


def test_several_dialogs_are_several_calls() -> None:
    tracker = DialogTracker(USERS)
    both = [confirmed("a", "c1"), confirmed("b", "c2")]
    assert tracker.update("200", both, 0) == [
        started("alice", "blf:c1"),
        started("alice", "blf:c2"),
    ]
    assert tracker.update("200", [confirmed("b", "c2")], 1) == [ended("alice", "blf:c1")]
    assert tracker.active() == {"alice": ["blf:c2"]}


def test_one_call_on_two_extensions_of_a_user_is_one_call() -> None:
    tracker = DialogTracker(USERS)
    assert tracker.update("200", [confirmed("a", "c1")], 0) == [started("alice", "blf:c1")]
    assert tracker.update("2001", [confirmed("b", "c1")], 0) == []
    assert tracker.update("200", [], 1) == []
    assert tracker.update("2001", [], 2) == [ended("alice", "blf:c1")]


def test_both_parties_of_one_call_share_its_id() -> None:
    tracker = DialogTracker(USERS)
    out = tracker.update("200", [confirmed("x", "c9")], 0)
    out += tracker.update("201", [confirmed("y", "c9")], 0)
    assert out == [started("alice", "blf:c9"), started("bob", "blf:c9")]


def test_asterisk_reuses_the_dialog_id_so_the_next_call_has_the_same_id_again() -> None:
    tracker = DialogTracker(USERS)
    events = []
    for _ in range(2):
        events += tracker.update("200", [confirmed("200")], 0)
        events += tracker.update("200", [Dialog("200", "terminated")], 1)
    assert events == [started("alice", "blf:200/200"), ended("alice", "blf:200/200")] * 2


@pytest.mark.parametrize(
    ("recording", "user", "extension"),
    [(ASTERISK_200, "alice", "200"), (ASTERISK_201, "bob", "201")],
)
def test_the_recorded_asterisk_call_starts_and_ends_once_per_party(
    recording: list[tuple[list[str], str]], user: str, extension: str
) -> None:
    tracker, view = DialogTracker(USERS), DialogView()
    events = []
    for now, (_, body) in enumerate(recording):
        view.apply(parse_dialog_info(body))
        events += tracker.update(extension, view.dialogs.values(), float(now))
    call_id = f"blf:{extension}/{extension}"
    assert events == [started(user, call_id), ended(user, call_id)]


def test_an_unknown_extension_reports_nothing() -> None:
    assert DialogTracker(USERS).update("999", [confirmed("a")], 0) == []


def test_the_maximum_call_length_ends_a_call_whose_end_was_lost() -> None:
    tracker = DialogTracker(USERS, max_call_seconds=100)
    tracker.update("201", [confirmed("a", "c")], 0)
    assert tracker.expire(99) == []
    assert tracker.expire(100) == [ended("bob", "blf:c", "max_call_length")]
    assert tracker.update("201", [confirmed("a", "c")], 150) == []  # that dialog stays ended
    assert tracker.update("201", [], 160) == []
    assert tracker.update("201", [confirmed("b", "d")], 170) == [started("bob", "blf:d")]


def test_forget_ends_the_calls_of_an_extension_that_can_no_longer_be_watched() -> None:
    tracker = DialogTracker(USERS)
    tracker.update("201", [confirmed("a", "c")], 0)
    assert tracker.forget("201") == [ended("bob", "blf:c", "resync")]
    assert tracker.forget("201") == []


def test_a_resync_reason_is_passed_on() -> None:
    tracker = DialogTracker(USERS)
    assert tracker.update("201", [confirmed("a", "c")], 0, "resync") == [
        started("bob", "blf:c", "resync")
    ]
    assert tracker.update("201", [], 0, "resync") == [ended("bob", "blf:c", "resync")]


# --- known calls: what a restarted source takes over ------------------------------------------


def test_a_known_call_still_going_is_taken_over_silently() -> None:
    tracker = DialogTracker(USERS, known_calls={"bob": ["blf:c"]})
    assert tracker.update("201", [confirmed("a", "c")], 0, "resync") == []
    assert tracker.active() == {"bob": ["blf:c"]}
    assert tracker.update("201", [], 1) == [ended("bob", "blf:c")]


def test_a_known_call_gone_from_the_first_state_ends() -> None:
    tracker = DialogTracker(USERS, known_calls={"bob": ["blf:c"]})
    assert tracker.update("201", [], 0, "resync") == [ended("bob", "blf:c", "resync")]


def test_a_known_call_waits_for_every_extension_of_its_user() -> None:
    tracker = DialogTracker(USERS, known_calls={"alice": ["blf:c"]})
    assert tracker.update("200", [], 0, "resync") == []  # it may be on the mobile
    assert tracker.update("2001", [], 0, "resync") == [ended("alice", "blf:c", "resync")]


def test_a_refused_extension_settles_its_user_too() -> None:
    tracker = DialogTracker(USERS, known_calls={"alice": ["blf:c"]})
    tracker.update("200", [], 0, "resync")
    assert tracker.forget("2001") == [ended("alice", "blf:c", "resync")]


def test_known_calls_of_other_sources_are_left_alone() -> None:
    tracker = DialogTracker(USERS, known_calls={"bob": ["1796149370.5"]})
    assert tracker.update("201", [], 0, "resync") == []
    assert tracker.active() == {}


def test_known_calls_of_users_without_a_watched_extension_end_at_once() -> None:
    tracker = DialogTracker(USERS, known_calls={"carol": ["blf:c"], "bob": ["blf:d"]})
    assert tracker.take_orphans() == [ended("carol", "blf:c", "resync")]
    assert tracker.take_orphans() == []
    assert tracker.active() == {"bob": ["blf:d"]}


def test_a_known_call_is_subject_to_the_maximum_call_length() -> None:
    tracker = DialogTracker(USERS, max_call_seconds=60, known_calls={"bob": ["blf:c"]}, now=10)
    assert tracker.expire(69) == []
    assert tracker.expire(70) == [ended("bob", "blf:c", "max_call_length")]
