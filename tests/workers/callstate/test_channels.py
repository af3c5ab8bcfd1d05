"""Asterisk channels -> calls per user, fed the recorded call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emulator.ami.recorded import recorded_call, renumbered
from workers.callstate.channels import CallEvent, ChannelTracker, endpoint_of

USERS = {"200": "alice", "201": "bob"}
CALL_ID = "1796149370.5"  # the recorded call's Linkedid, shared by both legs


def feed(
    tracker: ChannelTracker, events: Iterable[Mapping[str, str]], now: float = 0.0
) -> list[tuple[str, str, str]]:
    out: list[CallEvent] = []
    for event in events:
        out += tracker.on_event(event, now)
    return [(e.type, e.user, e.call_id) for e in out]


def upto_answer() -> list[dict[str, str]]:
    """The recorded call until both legs are Up (before anyone hangs up)."""
    events = recorded_call()
    return events[: next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter")]


def after_answer() -> list[dict[str, str]]:
    return recorded_call()[len(upto_answer()) :]


def test_the_recorded_call_starts_at_answer_and_ends_at_hangup_for_both_users() -> None:
    assert feed(ChannelTracker(USERS), recorded_call()) == [
        ("call_started", "bob", CALL_ID),  # the callee's leg is Up first
        ("call_started", "alice", CALL_ID),
        ("call_ended", "bob", CALL_ID),
        ("call_ended", "alice", CALL_ID),
    ]


def test_ringing_does_not_count_unless_asked() -> None:
    tracker = ChannelTracker(USERS)
    ringing = [e for e in upto_answer() if e.get("ChannelState") != "6"]
    assert feed(tracker, ringing) == []
    assert feed(ChannelTracker(USERS, busy_from="ringing"), ringing) == [
        ("call_started", "alice", CALL_ID),  # from Newchannel of each leg
        ("call_started", "bob", CALL_ID),
    ]


def test_only_mapped_extensions_are_reported() -> None:
    events = feed(ChannelTracker({"200": "alice"}), recorded_call())
    assert events == [("call_started", "alice", CALL_ID), ("call_ended", "alice", CALL_ID)]


def test_an_endpoint_name_maps_as_well_as_an_extension() -> None:
    tracker = ChannelTracker({"SIP/201": "bob"})
    assert tracker.user_of("SIP/201-00000006") == "bob"
    assert endpoint_of("PJSIP/alice-desk-0000002a") == "PJSIP/alice-desk"
    assert ChannelTracker({"PJSIP/alice-desk": "alice"}).user_of("PJSIP/alice-desk-1f") == "alice"


def test_local_channels_are_not_counted() -> None:
    tracker = ChannelTracker({"201": "bob", "201@from-internal": "bob"})
    local = {"Event": "Newchannel", "Channel": "Local/201@from-internal-00000001;1",
             "ChannelState": "6", "Uniqueid": "9.1", "Linkedid": "9.1"}  # fmt: skip
    assert tracker.on_event(local, 0) == []


def test_two_overlapping_calls_are_two_call_ids_that_end_on_their_own() -> None:
    tracker = ChannelTracker({"200": "alice"})
    second = renumbered(recorded_call(), "b")
    assert feed(tracker, upto_answer() + renumbered(upto_answer(), "b")) == [
        ("call_started", "alice", CALL_ID),
        ("call_started", "alice", CALL_ID + "b"),
    ]
    assert tracker.active() == {"alice": [CALL_ID, CALL_ID + "b"]}
    assert feed(tracker, second[len(upto_answer()) :]) == [("call_ended", "alice", CALL_ID + "b")]
    assert tracker.active() == {"alice": [CALL_ID]}


def test_a_later_linkedid_change_does_not_orphan_the_call() -> None:
    tracker = ChannelTracker({"200": "alice"})
    feed(tracker, upto_answer())
    moved = [
        dict(e, Linkedid="other") if e.get("Uniqueid") == CALL_ID else e for e in after_answer()
    ]
    assert feed(tracker, moved) == [("call_ended", "alice", CALL_ID)]


def snapshot_of(events: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """What CoreShowChannels lists after these events: each live channel's last fields."""
    live: dict[str, dict[str, str]] = {}
    for event in events:
        uid = event.get("Uniqueid", "")
        if event["Event"] == "Newchannel":
            live[uid] = {}
        if uid in live:
            live[uid].update(event)
        if event["Event"] == "Hangup":
            live.pop(uid, None)
    return [dict(v, Event="CoreShowChannel") for v in live.values()]


def test_a_resync_ends_what_ended_during_the_gap() -> None:
    tracker = ChannelTracker(USERS)
    feed(tracker, upto_answer())
    ended = tracker.reconcile(snapshot_of(recorded_call()), now=10)
    assert [(e.type, e.user, e.reason) for e in ended] == [
        ("call_ended", "alice", "resync"),
        ("call_ended", "bob", "resync"),
    ]
    assert tracker.active() == {}


def test_a_resync_starts_what_started_during_the_gap_and_only_once() -> None:
    tracker = ChannelTracker(USERS)
    started = tracker.reconcile(snapshot_of(upto_answer()), now=10)
    assert sorted((e.type, e.user) for e in started) == [
        ("call_started", "alice"),
        ("call_started", "bob"),
    ]
    assert tracker.reconcile(snapshot_of(upto_answer()), now=11) == []
    assert feed(tracker, after_answer()) == [
        ("call_ended", "bob", CALL_ID),
        ("call_ended", "alice", CALL_ID),
    ]


def test_the_maximum_call_length_ends_a_call_and_it_does_not_come_back() -> None:
    tracker = ChannelTracker({"200": "alice"}, max_call_seconds=60)
    feed(tracker, upto_answer(), now=100)
    assert tracker.expire(now=159) == []
    (ended,) = tracker.expire(now=160)
    assert (ended.type, ended.user, ended.reason) == ("call_ended", "alice", "max_call_length")
    assert tracker.reconcile(snapshot_of(upto_answer()), now=170) == []  # still there: stays ended
    assert feed(tracker, after_answer(), now=180) == []


def test_items_have_the_shape_pbx_events_accepts() -> None:
    event = CallEvent("call_started", "alice", CALL_ID, "answer")
    assert event.as_item() == {"type": "call_started", "user": "alice", "call_id": CALL_ID}


def test_a_restored_call_still_up_joins_its_channels_without_a_second_start() -> None:
    tracker = ChannelTracker(USERS)
    tracker.restore([("alice", CALL_ID, 5.0), ("bob", CALL_ID, 5.0)])
    assert tracker.reconcile(snapshot_of(upto_answer()), now=10) == []
    assert tracker.active() == {"alice": [CALL_ID], "bob": [CALL_ID]}
    assert feed(tracker, after_answer()) == [
        ("call_ended", "bob", CALL_ID),
        ("call_ended", "alice", CALL_ID),
    ]


def test_a_restored_call_that_ended_meanwhile_is_ended_by_the_resync() -> None:
    tracker = ChannelTracker(USERS)
    tracker.restore([("alice", CALL_ID, 5.0), ("carol", "1796149000.1", 1.0)])
    ended = tracker.reconcile([], now=10)
    assert [(e.type, e.user, e.call_id, e.reason) for e in ended] == [
        ("call_ended", "alice", CALL_ID, "resync"),
        ("call_ended", "carol", "1796149000.1", "resync"),  # no longer mapped: ended too
    ]
    assert tracker.active() == {}


def test_a_restored_call_whose_id_changed_starts_the_new_one_before_ending_the_old() -> None:
    tracker = ChannelTracker({"200": "alice"})
    tracker.restore([("alice", "1796149000.1", 5.0)])
    events = tracker.reconcile(snapshot_of(upto_answer()), now=10)
    assert [(e.type, e.call_id) for e in events] == [
        ("call_started", CALL_ID),
        ("call_ended", "1796149000.1"),
    ]


def test_a_restored_call_keeps_its_start_for_the_maximum_call_length() -> None:
    tracker = ChannelTracker({"200": "alice"}, max_call_seconds=60)
    tracker.restore([("alice", CALL_ID, 100.0)])
    tracker.reconcile(snapshot_of(upto_answer()), now=150)
    (ended,) = tracker.expire(now=160)
    assert (ended.user, ended.reason) == ("alice", "max_call_length")
