"""PBX calls -> Teams presence, end to end, and the way back that must not loop."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Bridge, wait_for


def call(kind: str, user: str = "alice", call_id: str = "call-1") -> dict[str, str]:
    return {"type": kind, "user": user, "call_id": call_id}


def start_call(bridge: Bridge, user: str = "alice") -> None:
    assert bridge.post_pbx_events(call("call_started", user)).status_code == 202


def end_call(bridge: Bridge, user: str = "alice") -> None:
    assert bridge.post_pbx_events(call("call_ended", user)).status_code == 202


def wait_teams(bridge: Bridge, user: str, presence: tuple[str, str]) -> None:
    wait_for(lambda: bridge.teams_presence(user) == presence, f"Teams to show {user} {presence}")


def drain(bridge: Bridge) -> None:
    """Every notification sent so far is processed once a later one for bob is applied."""
    bridge.delivery_idle()
    bridge.set_teams("bob", "Away", "Away")
    bridge.wait_applied("bob", "Away")


def our_session(bridge: Bridge, user: str) -> dict[str, Any] | None:
    found = bridge.control.request("GET", f"/presence/{bridge.users[user]}")
    return next((s for s in found["sessions"] if s["sessionId"] == bridge.client_id), None)


def available(bridge: Bridge, user: str = "alice") -> None:
    bridge.set_teams(user, "Available", "Available")
    bridge.wait_applied(user, "Available")


def test_pbx_call_shows_the_user_in_a_call_in_teams(bridge: Bridge) -> None:
    available(bridge)
    start_call(bridge)
    wait_teams(bridge, "alice", ("Busy", "InACall"))
    session = our_session(bridge, "alice")
    assert session is not None and (session["availability"], session["activity"]) == (
        "Busy",
        "InACall",
    )


def test_our_own_call_presence_does_not_come_back_to_the_pbx(bridge: Bridge) -> None:
    available(bridge)
    start_call(bridge)
    wait_teams(bridge, "alice", ("Busy", "InACall"))
    drain(bridge)
    assert bridge.builtin_profile("alice") == "Available"
    assert bridge.applied_profiles("alice") == ["Available"]


def test_call_end_clears_our_presence_and_teams_changes_map_again(bridge: Bridge) -> None:
    available(bridge)
    start_call(bridge)
    wait_teams(bridge, "alice", ("Busy", "InACall"))
    end_call(bridge)
    wait_teams(bridge, "alice", ("Available", "Available"))
    assert our_session(bridge, "alice") is None
    bridge.set_teams("alice", "Busy", "InAMeeting")
    bridge.wait_applied("alice", "Busy")
    assert bridge.applied_profiles("alice") == ["Available", "Busy"]


def test_hand_set_teams_status_stays_on_top_during_a_pbx_call(bridge: Bridge) -> None:
    available(bridge)
    bridge.set_preferred("alice", "DoNotDisturb", "DoNotDisturb")
    bridge.wait_applied("alice", "Do Not Disturb")
    start_call(bridge)
    wait_for(lambda: our_session(bridge, "alice"), "the bridge's call session")
    assert bridge.teams_presence("alice") == ("DoNotDisturb", "DoNotDisturb")
    drain(bridge)
    assert bridge.applied_profiles("alice") == ["Available", "Do Not Disturb"]
