"""PBX calls read from Asterisk itself, end to end: the recorded call replayed by the AMI
server -> `python -m workers.callstate` -> intake -> worker -> Teams at the Graph emulator."""

from __future__ import annotations

import pytest

from core.state import calls, callstate
from emulator.ami.recorded import recorded_call
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, wait_for
from tests.e2e.test_reverse_path import available, drain, our_session, wait_teams

LISTENER, LISTENER_SECRET = "bridge-calls", "calls-secret-" + "c" * 20  # noqa: S105
CALL_ID = "1796149370.5"  # the recorded call's Linkedid
BUSY, FREE = ("Busy", "InACall"), ("Available", "Available")


def upto_answer() -> list[dict[str, str]]:
    events = recorded_call()
    return events[: next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter")]


def after_answer() -> list[dict[str, str]]:
    return recorded_call()[len(upto_answer()) :]


@pytest.fixture
def bridge(bridge_factory: BridgeFactory, ami_server: AmiServer) -> Bridge:
    """Builtin adapter one way; the other way, Asterisk's calls for 200 (alice), 201 (bob)."""
    ami_server.users[LISTENER] = ManagerUser.of(LISTENER_SECRET, read="call", write="reporting")
    options = (
        f'host = "{ami_server.host}", port = {ami_server.port}, username = "{LISTENER}", '
        "ping_interval = 1, backoff_initial = 0.05, backoff_max = 0.5, stable_after = 0"
    )
    callstate_toml = f'[tenants.pbx.callstate]\nsource = "ami"\noptions = {{ {options} }}\n'
    pbx = f'adapter = "builtin"\n{callstate_toml}'
    bridge = bridge_factory(
        pbx=pbx,
        extensions={"alice": "200", "bob": "201"},
        env={
            f"PRESENCE_BRIDGE_TENANT_{TENANT.upper()}_CALLSTATE_SECRET": LISTENER_SECRET,
            "PRESENCE_BRIDGE_CALLSTATE_LOCK_SECONDS": "1",
        },
    )
    available(bridge, "alice")
    available(bridge, "bob")
    return bridge


def no_calls_left(bridge: Bridge) -> bool:
    return not any(calls.read(bridge.redis, TENANT, u).call_ids for u in ("alice", "bob"))


def test_an_answered_pbx_call_shows_both_users_in_a_call_until_hang_up(
    bridge: Bridge, ami_server: AmiServer
) -> None:
    bridge.start_callstate()
    ami_server.replay(upto_answer())
    wait_teams(bridge, "alice", BUSY)
    wait_teams(bridge, "bob", BUSY)
    assert calls.read(bridge.redis, TENANT, "alice").call_ids == (CALL_ID,)

    ami_server.replay(after_answer())
    wait_teams(bridge, "alice", FREE)
    wait_teams(bridge, "bob", FREE)
    assert our_session(bridge, "alice") is None and our_session(bridge, "bob") is None
    drain(bridge)
    assert bridge.builtin_profile("alice") == "Available"  # our own call presence: no echo
    assert bridge.applied_profiles("alice") == ["Available"]


def test_a_listener_killed_mid_call_leaves_nothing_stuck_after_its_restart(
    bridge: Bridge, ami_server: AmiServer
) -> None:
    listener = bridge.start_callstate()
    ami_server.replay(upto_answer())
    wait_teams(bridge, "alice", BUSY)
    wait_teams(bridge, "bob", BUSY)

    listener.kill()
    ami_server.replay(after_answer())  # the call ends while nobody listens
    assert bridge.teams_presence("alice") == BUSY  # nobody told Teams yet
    bridge.start_callstate()

    wait_teams(bridge, "alice", FREE)
    wait_teams(bridge, "bob", FREE)
    wait_for(lambda: no_calls_left(bridge), "no PBX call left for alice and bob")
    assert callstate.reported(bridge.redis, TENANT, "ami") == []
    assert our_session(bridge, "alice") is None and our_session(bridge, "bob") is None
