"""The user's own Asterisk profile comes back, end to end: the `asterisk` adapter writes and
`python -m workers.callstate` follows the AMI server built from recorded Asterisk traffic,
the Graph emulator is Teams, the real web app, worker process and Redis are between."""

from __future__ import annotations

from typing import Any

import pytest

from core.asterisk_options import AmiEndpoint
from core.state import profiles
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from emulator.harness.bridge import PBX_SECRET
from tests.ami_fixtures import SECRET, USERNAME
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, wait_for
from workers.pbx.ami import AmiClient
from workers.restore import REPORT_NO_CHANGE, REPORT_TAKEN

ADAPTER = "bridge-writes"  # the adapter's manager user; its secret is the tenant's PBX secret
LISTENER, LISTENER_SECRET = "bridge-calls", "calls-secret-" + "c" * 20  # noqa: S105
MEETING, LEFT = ("Busy", "InAMeeting"), ("Available", "Available")


@pytest.fixture
def bridge(bridge_factory: BridgeFactory, ami_server: AmiServer) -> Bridge:
    """alice is extension 200 of the recorded Asterisk; the least privilege on both users."""
    ami_server.users[ADAPTER] = ManagerUser.of(PBX_SECRET, read="", write="system,call")
    ami_server.users[LISTENER] = ManagerUser.of(LISTENER_SECRET, read="call", write="reporting")
    where = f'host = "{ami_server.host}", port = {ami_server.port}'
    listener = (f'{where}, username = "{LISTENER}", ping_interval = 1, backoff_initial = 0.05, '
                "backoff_max = 0.5, stable_after = 0")  # fmt: skip
    pbx = (
        f'adapter = "asterisk"\noptions = {{ {where}, username = "{ADAPTER}" }}\n'
        f'[tenants.pbx.callstate]\nsource = "ami"\noptions = {{ {listener} }}\n'
    )
    bridge = bridge_factory(
        pbx=pbx,
        preset="pascom",
        extensions={"alice": "200", "bob": "201"},
        env={
            f"PRESENCE_BRIDGE_TENANT_{TENANT.upper()}_CALLSTATE_SECRET": LISTENER_SECRET,
            "PRESENCE_BRIDGE_CALLSTATE_LOCK_SECONDS": "1",
        },
    )
    bridge.start_callstate()
    return bridge


def press_dnd_on_the_phone(ami_server: AmiServer, extension: str) -> None:
    """What FreePBX's *78 does in its dialplan: AstDB DND/<ext>, then the hint's device state."""
    endpoint = AmiEndpoint(host=ami_server.host, port=ami_server.port, username=USERNAME)
    client = AmiClient(endpoint, SECRET)
    client.connect()
    try:
        client.action("DBPut", {"Family": "DND", "Key": extension, "Val": "YES"})
        client.action("Setvar", {"Variable": f"DEVICE_STATE(Custom:DND{extension})",
                                 "Value": "BUSY"})  # fmt: skip
    finally:
        client.close()


def judged(bridge: Bridge, user: str) -> list[dict[str, Any]]:
    """The reports the worker judged for `user`, oldest first."""
    events = reversed(profiles.recent_events(bridge.redis, TENANT, user))
    return [e for e in events if e.get("result") in (REPORT_TAKEN, REPORT_NO_CHANGE)]


def wait_judged(bridge: Bridge, user: str, profile: str, result: str, count: int = 1) -> None:
    def check() -> bool:
        found = [e for e in judged(bridge, user) if e["profile"] == profile]
        return len([e for e in found if e["result"] == result]) >= count

    wait_for(check, f"{count} report(s) of {profile!r} for {user} judged {result!r}")


def shown(ami_server: AmiServer, extension: str) -> tuple[str | None, str | None]:
    db = ami_server.db()
    return db.get(("DND", extension)), db.get(("CustomPresence", extension))


def test_dnd_set_on_the_phone_comes_back_after_a_teams_meeting(
    bridge: Bridge, ami_server: AmiServer
) -> None:
    press_dnd_on_the_phone(ami_server, "200")
    wait_judged(bridge, "alice", "Do Not Disturb", REPORT_TAKEN)
    bridge.wait_applied("alice", "Do Not Disturb", "the user's own DND recorded as shown")

    bridge.set_teams("alice", *MEETING)
    bridge.wait_applied("alice", "Teams Meeting")
    assert shown(ami_server, "200") == ("YES", "dnd,,Teams Meeting")
    # Our write read back (DND, then presence) is ours, not a new choice of the user.
    wait_judged(bridge, "alice", "Teams Meeting", REPORT_NO_CHANGE)

    bridge.set_teams("alice", *LEFT)
    bridge.wait_applied("alice", "Do Not Disturb", "DND back after the meeting")
    assert shown(ami_server, "200") == ("YES", "dnd,,Do Not Disturb")
    wait_judged(bridge, "alice", "Do Not Disturb", REPORT_NO_CHANGE)
    assert bridge.applied_profiles("alice") == ["Do Not Disturb", "Teams Meeting",
                                                "Do Not Disturb"]  # fmt: skip
    taken = [e for e in judged(bridge, "alice") if e["result"] == REPORT_TAKEN]
    assert [(e["profile"], e["source"]) for e in taken] == [("Do Not Disturb", "ami")]


def test_our_own_dnd_write_read_back_is_not_the_users(
    bridge: Bridge, ami_server: AmiServer
) -> None:
    bridge.set_teams("alice", *MEETING)
    bridge.wait_applied("alice", "Teams Meeting")
    assert shown(ami_server, "200") == ("YES", "dnd,,Teams Meeting")
    wait_judged(bridge, "alice", "Teams Meeting", REPORT_NO_CHANGE)

    bridge.set_teams("alice", *LEFT)
    bridge.wait_applied("alice", "Available", "Available after the meeting, not a held DND")
    wait_judged(bridge, "alice", "Available", REPORT_NO_CHANGE)
    assert shown(ami_server, "200") == (None, "available,,Available")
    assert bridge.applied_profiles("alice") == ["Teams Meeting", "Available"]
    assert [e for e in judged(bridge, "alice") if e["result"] == REPORT_TAKEN] == []
