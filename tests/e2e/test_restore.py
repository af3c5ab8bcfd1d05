"""The user's own PBX profile comes back, end to end: the builtin adapter's API as the PBX
side, the Graph emulator as Teams, the real web app, worker process and Redis between."""

from __future__ import annotations

from typing import Any

from core.state import profiles
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, wait_for
from workers.restore import REPORT_NO_CHANGE, REPORT_TAKEN


def set_on_pbx(bridge: Bridge, user: str, profile: str) -> None:
    """What the user's PBX client does when they pick a profile there."""
    with bridge.api() as api:
        assert api.put(f"/users/{user}/profile", json={"profile": profile}).status_code == 202


def reported(bridge: Bridge, user: str, profile: str) -> dict[str, Any]:
    """Until the worker has judged a report of `profile` for `user`; its event."""
    judged = {REPORT_TAKEN, REPORT_NO_CHANGE}

    def check() -> dict[str, Any] | None:
        events = profiles.recent_events(bridge.redis, TENANT, user)
        found = [e for e in events if e.get("result") in judged and e["profile"] == profile]
        return found[0] if found else None

    return wait_for(check, f"the report of {profile!r} for {user} judged")


def test_lunch_set_on_the_pbx_comes_back_after_a_teams_meeting(
    bridge_factory: BridgeFactory,
) -> None:
    bridge = bridge_factory(preset="pascom")
    set_on_pbx(bridge, "alice", "Lunch")
    bridge.wait_applied("alice", "Lunch", "the user's own Lunch published")
    bridge.set_teams("alice", "Busy", "InAMeeting")
    bridge.wait_applied("alice", "Teams Meeting")
    bridge.set_teams("alice", "Available", "Available")
    bridge.wait_applied("alice", "Lunch", "Lunch back after the meeting")
    assert bridge.applied_profiles("alice") == ["Lunch", "Teams Meeting", "Lunch"]
    assert bridge.builtin_profile("alice") == "Lunch"
    judged = reported(bridge, "alice", "Lunch")
    assert (judged["result"], judged["source"]) == (REPORT_TAKEN, "builtin-api")


def test_our_own_profile_sent_back_by_the_pbx_is_not_the_users(
    bridge_factory: BridgeFactory,
) -> None:
    bridge = bridge_factory(preset="pascom")
    set_on_pbx(bridge, "alice", "Lunch")
    bridge.wait_applied("alice", "Lunch")
    bridge.set_teams("alice", "Busy", "InAMeeting")
    bridge.wait_applied("alice", "Teams Meeting")
    # A PBX client that syncs what it was served sends the meeting profile straight back.
    set_on_pbx(bridge, "alice", "Teams Meeting")
    assert reported(bridge, "alice", "Teams Meeting")["result"] == REPORT_NO_CHANGE
    bridge.set_teams("alice", "Available", "Available")
    bridge.wait_applied("alice", "Lunch", "Lunch back after the meeting")
    assert bridge.applied_profiles("alice") == ["Lunch", "Teams Meeting", "Lunch"]
