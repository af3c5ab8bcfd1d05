"""The `asterisk` adapter against the AMI server: DND that routes, CustomPresence, read-back,
and writes Asterisk refuses raising instead of counting as applied."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.asterisk_options import DEFAULT_PROFILES
from core.errors import ConfigError, PbxError
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from tests.ami_fixtures import SECRET, endpoint_options
from workers.mapping_presets import PRESETS
from workers.pbx.asterisk import AsteriskAdapter, AsteriskState, sanitise_message
from workers.pbx.base import PbxAdapter, ProfileChange

AdapterFactory = Callable[..., AsteriskAdapter]
LIMITED_SECRET = "limited-pw"  # noqa: S105 - a loopback test user


def change(profile: str, user: str = "alice") -> ProfileChange:
    return ProfileChange(user, profile)


@pytest.fixture
def make_adapter(ami_server: AmiServer) -> Iterator[AdapterFactory]:
    made: list[AsteriskAdapter] = []

    def make(secret: str = SECRET, **options: Any) -> AsteriskAdapter:
        adapter = AsteriskAdapter(
            endpoint_options(ami_server, **options), SecretStr(secret), {"alice": "200"}
        )
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def test_a_meeting_sets_freepbx_dnd_its_device_state_and_presence(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    make_adapter().apply_profile(change("Teams Meeting"))
    db = ami_server.db()
    assert db[("DND", "200")] == "YES"
    assert db[("CustomDevstate", "DND200")] == "BUSY"
    assert db[("CustomPresence", "200")] == "dnd,,Teams Meeting"


def test_available_clears_dnd_and_sets_the_device_state_off(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter()
    adapter.apply_profile(change("Teams Meeting"))
    adapter.apply_profile(change("Available"))
    db = ami_server.db()
    assert ("DND", "200") not in db
    assert db[("CustomDevstate", "DND200")] == "UNAVAILABLE"
    assert db[("CustomPresence", "200")] == "available,,Available"


def test_clearing_dnd_that_was_never_set_is_harmless(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    make_adapter().apply_profile(change("Available"))
    assert [a.action for a in ami_server.actions() if a.action.startswith("DB")] == [
        "DBGet",  # DND/200: not there, so no DBDel (Asterisk refuses to delete a missing key)
        "DBGet",  # AMPUSER/200/device: not FreePBX, so no per-device lamps
    ]


@pytest.mark.parametrize(
    "profile", ["Available", "Away", "Do Not Disturb", "Teams Meeting", "Busy", "On Call"]
)
def test_every_shipped_profile_is_applied_and_read_back(
    make_adapter: AdapterFactory, profile: str
) -> None:
    adapter = make_adapter()
    adapter.apply_profile(change(profile))
    assert adapter.read_profile("alice") == profile


def test_dnd_set_on_the_phone_reads_as_do_not_disturb(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.db_put("DND", "200", "YES")  # FreePBX's *76 feature code writes this
    adapter = make_adapter()
    assert adapter.read_state("alice") == AsteriskState(dnd=True, state="not_set", message="")
    assert adapter.read_profile("alice") == "Do Not Disturb"


def test_a_status_the_user_set_reads_back_with_its_message(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.db_put("CustomPresence", "200", "away,,Lunch")
    adapter = make_adapter()
    assert adapter.read_state("alice") == AsteriskState(dnd=False, state="away", message="Lunch")
    assert adapter.read_profile("alice") == "Away"


def test_a_message_with_commas_is_sanitised_and_shown_as_written(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(default={"dnd": False, "state": "away"})
    adapter.apply_profile(change("Lunch, then errands"))
    assert ami_server.db()[("CustomPresence", "200")] == "away,,Lunch; then errands"
    assert adapter.read_state("alice").message == "Lunch; then errands"


def test_sanitise_message_removes_what_asterisk_would_split_or_inject() -> None:
    assert sanitise_message("In a meeting,\r\nback at 3") == "In a meeting; back at 3"
    assert sanitise_message("  Teams\tMeeting  ") == "Teams Meeting"
    assert len(sanitise_message("x" * 500)) == 200


def test_an_unknown_profile_without_a_default_is_a_permanent_error(
    make_adapter: AdapterFactory,
) -> None:
    with pytest.raises(PbxError, match="no target for profile 'Lunch'") as exc:
        make_adapter().apply_profile(change("Lunch"))
    assert exc.value.transient is False


def test_presence_only_leaves_dnd_alone(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(dnd=False)
    adapter.apply_profile(change("Teams Meeting"))
    assert ("DND", "200") not in ami_server.db()
    assert adapter.read_state("alice") == AsteriskState(dnd=None, state="dnd",
                                                        message="Teams Meeting")  # fmt: skip


def test_freepbx_devices_of_the_user_get_their_dnd_lamp_too(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.db_put("AMPUSER", "200/device", "200&200b")  # FreePBX: the user's devices
    adapter = make_adapter()
    adapter.apply_profile(change("Teams Meeting"))
    db = ami_server.db()
    assert db[("CustomDevstate", "DEVDND200")] == db[("CustomDevstate", "DEVDND200b")] == "BUSY"
    adapter.apply_profile(change("Available"))
    assert ami_server.db()[("CustomDevstate", "DEVDND200b")] == "UNAVAILABLE"


def test_more_device_states_follow_dnd(ami_server: AmiServer, make_adapter: AdapterFactory) -> None:
    devices = ["Custom:DND{extension}", "Custom:TEAMS{extension}"]
    make_adapter(dnd_device_states=devices).apply_profile(change("Do Not Disturb"))
    db = ami_server.db()
    assert db[("CustomDevstate", "DND200")] == db[("CustomDevstate", "TEAMS200")] == "BUSY"


# --- refusals: never counted as applied ---------------------------------------------------


def test_a_setvar_asterisk_refuses_raises_with_its_reason(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.functions.discard("PRESENCE_STATE")  # func_presencestate not loaded
    with pytest.raises(PbxError, match="Variable not set") as exc:
        make_adapter().apply_profile(change("Teams Meeting"))
    assert exc.value.transient is False
    assert ("CustomPresence", "200") not in ami_server.db()


def test_a_manager_user_without_system_write_cannot_set_dnd(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.users["presence-only"] = ManagerUser.of(
        LIMITED_SECRET, read="", write="call,reporting"
    )
    adapter = make_adapter(secret=LIMITED_SECRET, username="presence-only")
    with pytest.raises(
        PbxError, match=r"Permission denied \(the manager user needs write = system"
    ):
        adapter.apply_profile(change("Teams Meeting"))
    assert ami_server.db() == {}
    adapter = make_adapter(secret=LIMITED_SECRET, username="presence-only", dnd=False)
    adapter.apply_profile(change("Teams Meeting"))  # the same user can drive presence alone


def test_a_wrong_secret_is_a_permanent_error(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    ami_server.auth_failure_delay = 0.01
    with pytest.raises(PbxError, match="Authentication failed") as exc:
        make_adapter(secret="wrong").apply_profile(change("Available"))  # noqa: S106
    assert exc.value.transient is False


def test_an_unreachable_asterisk_is_transient(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter()
    ami_server.go_down()
    with pytest.raises(PbxError) as exc:
        adapter.apply_profile(change("Available"))
    assert exc.value.transient is True
    with pytest.raises(PbxError) as read:
        adapter.read_profile("alice")
    assert read.value.transient is True


def test_a_dropped_session_is_reopened_once(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter()
    adapter.apply_profile(change("Away"))
    ami_server.drop_connections()
    adapter.apply_profile(change("Teams Meeting"))
    assert adapter.read_profile("alice") == "Teams Meeting"
    assert ami_server.logins() == 2


def test_an_extension_that_cannot_be_spliced_into_a_key_is_refused(
    make_adapter: AdapterFactory,
) -> None:
    with pytest.raises(PbxError, match="no usable extension"):
        make_adapter().apply_profile(change("Available", user="200)&Custom:x"))


def test_the_adapter_logs_in_with_events_off(
    ami_server: AmiServer, make_adapter: AdapterFactory
) -> None:
    make_adapter().read_profile("alice")
    (login,) = [a for a in ami_server.actions() if a.action == "Login"]
    assert login.headers["Events"] == "off" and "Secret" not in login.headers


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"profiles": {"Busy": {"dnd": True, "state": "busy"}}}, "profiles.Busy.state"),
        ({"presence_provider": "CustomPresence:me"}, "must contain {extension}"),
        ({"presence_provider": "SIP/{extension}"}, "presence_provider"),
        ({"dnd_device_states": ["PJSIP/{extension}"]}, "dnd_device_states.0"),
        ({"port": 0}, "pbx.options.port"),
    ],
)
def test_bad_options_are_listed_at_start(
    ami_server: AmiServer, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        AsteriskAdapter(endpoint_options(ami_server, **options), SecretStr(SECRET))


def test_it_is_a_pbx_adapter_that_cannot_list_users(make_adapter: AdapterFactory) -> None:
    adapter: PbxAdapter = make_adapter()  # mypy checks the Protocol here
    assert (adapter.name, adapter.list_users()) == ("asterisk", None)


def test_the_secret_is_required(ami_server: AmiServer) -> None:
    with pytest.raises(ConfigError, match="pbx.secret"):
        AsteriskAdapter(endpoint_options(ami_server), None)


def test_every_profile_a_shipped_mapping_preset_produces_has_a_target() -> None:
    produced = {rule.profile for rules in PRESETS.values() for rule in rules if rule.profile}
    assert produced <= set(DEFAULT_PROFILES)
