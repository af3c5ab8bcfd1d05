"""PBX calls read from the PBX's BLF feed, end to end: a call placed by SIPp through a real
Kamailio -> dialog NOTIFYs -> `python -m workers.callstate` -> intake -> worker -> Teams at
the Graph emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.state import calls, callstate
from core.state.callstate import counter_field
from emulator.harness.kamailio import KamailioServer, blf_server
from emulator.harness.sipp import Call, answering
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, wait_for
from tests.e2e.test_reverse_path import available, drain, our_session, wait_teams

BUSY, FREE = ("Busy", "InACall"), ("Available", "Available")
USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def pbx() -> Iterator[KamailioServer]:
    """A small PBX: registrar, proxy, dialog module and dialog-info presence."""
    server = blf_server()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def bridge(bridge_factory: BridgeFactory, pbx: KamailioServer) -> Bridge:
    """Builtin adapter one way; the other way, the dialogs of 200 (alice) and 201 (bob)."""
    options = (
        f'host = "127.0.0.1", port = {pbx.udp_port}, domain = "{pbx.domain}", '
        'bind_host = "127.0.0.1", retry_initial = 0.2'
    )
    pbx_toml = 'adapter = "builtin"\n[tenants.pbx.callstate]\nsource = "blf"\n' + (
        f"options = {{ {options} }}\n"
    )
    bridge = bridge_factory(
        pbx=pbx_toml,
        extensions={"alice": "200", "bob": "201"},
        env={"PRESENCE_BRIDGE_CALLSTATE_LOCK_SECONDS": "1"},
    )
    for user in USERS:
        available(bridge, user)
    return bridge


def blf_call_id(call: Call) -> str:
    return f"blf:{call.call_id}"


def held(bridge: Bridge, user: str) -> tuple[str, ...]:
    return calls.read(bridge.redis, TENANT, user).call_ids


def resyncs(bridge: Bridge) -> int:
    """Full states read by every listener so far (one per extension and subscription)."""
    return bridge.metrics().get(counter_field(TENANT, "blf", "resyncs"), 0)


def wait_cleared(bridge: Bridge) -> None:
    for user in USERS:
        wait_teams(bridge, user, FREE)
    wait_for(lambda: not any(held(bridge, u) for u in USERS), "no PBX call left")
    assert callstate.reported(bridge.redis, TENANT, "blf") == []
    assert all(our_session(bridge, u) is None for u in USERS)


def test_an_answered_sip_call_shows_both_users_in_a_call_until_hang_up(
    bridge: Bridge, pbx: KamailioServer
) -> None:
    bridge.start_callstate()
    with answering(pbx, "201"):
        call = Call(pbx, "200", "201")
        try:
            wait_teams(bridge, "alice", BUSY)
            wait_teams(bridge, "bob", BUSY)
            assert held(bridge, "alice") == held(bridge, "bob") == (blf_call_id(call),)
            call.hang_up()
        finally:
            call.close()
    wait_cleared(bridge)
    drain(bridge)
    assert bridge.builtin_profile("alice") == "Available"  # our own call presence: no echo
    assert bridge.applied_profiles("alice") == ["Available"]


def test_a_listener_killed_mid_call_ends_the_call_it_missed_once_restarted(
    bridge: Bridge, pbx: KamailioServer
) -> None:
    listener = bridge.start_callstate()
    with answering(pbx, "201"):
        call = Call(pbx, "200", "201")
        try:
            wait_teams(bridge, "alice", BUSY)
            wait_teams(bridge, "bob", BUSY)
            listener.kill()  # no un-SUBSCRIBE: Kamailio notifies a port nobody reads
            call.hang_up()  # the call ends while nobody listens
        finally:
            call.close()
    assert bridge.teams_presence("alice") == BUSY  # nobody told Teams yet
    bridge.start_callstate()
    wait_cleared(bridge)


def test_a_listener_restarted_mid_call_takes_the_call_over_and_ends_it_at_hang_up(
    bridge: Bridge, pbx: KamailioServer
) -> None:
    listener = bridge.start_callstate()
    with answering(pbx, "201"):
        call = Call(pbx, "200", "201")
        try:
            wait_teams(bridge, "alice", BUSY)
            wait_teams(bridge, "bob", BUSY)
            listener.kill()
            before = resyncs(bridge)
            bridge.start_callstate()
            # Both extensions' first full state read: the call goes on, nothing is cleared.
            wait_for(lambda: resyncs(bridge) >= before + 2 or None, "both extensions resynced")
            assert bridge.teams_presence("alice") == BUSY
            assert bridge.teams_presence("bob") == BUSY
            assert held(bridge, "alice") == held(bridge, "bob") == (blf_call_id(call),)
            call.hang_up()
        finally:
            call.close()
    wait_cleared(bridge)
