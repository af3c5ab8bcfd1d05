"""A user's own DND and CustomPresence changes on Asterisk -> profile reports: the recorded
PresenceStateChange events, the DeviceStateChange that FreePBX's DND codes raise, and the
`ami` listener handing them over (logged in as a manager user with `read = call` only)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.queue import ProfileReport
from emulator.ami.recorded import recorded
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from tests.ami_fixtures import endpoint_options
from tests.workers.callstate.test_ami import FAST, wait_until
from workers.callstate.ami import AmiCallSource
from workers.callstate.profile_watch import ProfileWatch
from workers.pbx.asterisk import AsteriskAdapter

LISTENER, LISTENER_SECRET = "bridge-listener", "listener-secret"  # noqa: S105 - loopback test
DND_PROFILES = ["Do Not Disturb", "Teams Meeting", "Busy", "On Call"]


def watch(**options: Any) -> ProfileWatch:
    rules = AsteriskAdapter({"host": "127.0.0.1", "username": "x", **options}, SecretStr("s"),
                            {"alice": "200", "bob": "201"})  # fmt: skip
    return ProfileWatch(rules, ["alice", "bob", "nobody/ext"])


def device(name: str, state: str) -> dict[str, str]:
    return {"Event": "DeviceStateChange", "Privilege": "call,all", "Device": name, "State": state}


def presence_changes() -> list[dict[str, str]]:
    return [e for e in recorded("ami-presence-events") if e["Event"] == "PresenceStateChange"]


def test_the_recorded_presence_changes_name_the_profiles_read_profile_would() -> None:
    w = watch()
    reports = [w.on_event(e, 1.0) for e in presence_changes()]
    assert [(r.user, r.profile) if r else None for r in reports] == [
        ("alice", "Available"), ("alice", "Away"), ("alice", "Do Not Disturb"),
        ("alice", "Teams Meeting"), ("alice", "Away"), ("alice", "Away"),
        ("alice", "Away"),  # the base64-garbled "Lunch": away, no profile of that message
        None,  # a provider no user has
    ]  # fmt: skip
    assert {r.source for r in reports if r} == {"ami"}


def test_dnd_pressed_on_the_phone_is_do_not_disturb_and_fits_every_dnd_profile() -> None:
    report = watch().on_event(device("Custom:DND200", "BUSY"), 5.0)
    assert report == ProfileReport("alice", "Do Not Disturb", "ami", 5.0, on_pbx=True,
                                   matches=tuple(DND_PROFILES[1:]))  # fmt: skip


def test_dnd_off_after_our_meeting_is_available() -> None:
    w = watch()
    w.on_event(device("Custom:DND200", "BUSY"), 1.0)
    w.on_event({"Event": "PresenceStateChange", "Presentity": "CustomPresence:200",
                "Status": "dnd", "Subtype": "", "Message": "Teams Meeting"}, 2.0)  # fmt: skip
    report = w.on_event(device("custom:dnd200", "NOT_INUSE"), 3.0)  # FreePBX's *79
    assert report is not None and (report.profile, report.matches) == ("Available", ("Away",))


def test_presence_and_dnd_together_name_the_exact_profile() -> None:
    w = watch()
    w.on_event(device("Custom:DND201", "BUSY"), 1.0)
    report = w.on_event({"Event": "PresenceStateChange", "Presentity": "CustomPresence:201",
                         "Status": "dnd", "Message": "On Call"}, 2.0)  # fmt: skip
    assert report is not None and (report.user, report.profile, report.matches) == (
        "bob",
        "On Call",
        (),
    )


@pytest.mark.parametrize(
    "event",
    [
        device("SIP/200", "INUSE"),  # a call, not DND
        device("Custom:DND999", "BUSY"),  # nobody's extension
        device("Custom:DND200", "RINGING"),  # not a value DND is written with
        {"Event": "PresenceStatus", "Exten": "200", "Status": "dnd", "Message": "x"},
        {"Event": "Newchannel", "Channel": "SIP/200-00000001"},
    ],
)
def test_other_events_make_no_report(event: dict[str, str]) -> None:
    assert watch().on_event(event, 1.0) is None


def test_a_half_the_adapter_does_not_write_is_not_followed() -> None:
    assert watch(dnd=False).on_event(device("Custom:DND200", "BUSY"), 1.0) is None
    assert watch(presence=False).on_event(presence_changes()[0], 1.0) is None


class Collector(list[ProfileReport]):
    """`report` of a listener: takes the reports, or refuses them as Redis away would."""

    refuse = False

    def __call__(self, batch: list[ProfileReport]) -> None:
        if self.refuse:
            raise ConnectionError("redis away")
        self.extend(batch)


@pytest.fixture
def listening(ami_server: AmiServer) -> Iterator[tuple[AmiCallSource, Collector]]:
    """The listener as a least-privilege manager user: read = call, write = reporting."""
    ami_server.users[LISTENER] = ManagerUser.of(LISTENER_SECRET, read="call", write="reporting")
    reports = Collector()
    source = AmiCallSource(endpoint_options(ami_server, username=LISTENER, **FAST),
                           SecretStr(LISTENER_SECRET), {"200": "alice"}, lambda item: None,
                           profiles=watch(), report=reports)  # fmt: skip
    thread = threading.Thread(target=lambda: asyncio.run(source.run()), daemon=True)
    thread.start()
    wait_until(lambda: source.connected)
    yield source, reports
    source.stop()
    thread.join(10)


def test_the_listener_reports_the_recorded_presence_changes_in_the_call_class(
    ami_server: AmiServer, listening: tuple[AmiCallSource, Collector]
) -> None:
    source, reports = listening
    ami_server.replay(recorded("ami-presence-events"))
    wait_until(lambda: bool(reports) and reports[-1].profile == "Away"
               and source.counts["profile_reports"] == len(reports))  # fmt: skip
    assert {r.user for r in reports} == {"alice"}
    assert reports[-1].at > 0


def test_the_listener_holds_reports_while_they_cannot_be_handed_over(
    ami_server: AmiServer, listening: tuple[AmiCallSource, Collector]
) -> None:
    source, reports = listening
    reports.refuse = True
    ami_server.publish(device("Custom:DND200", "BUSY"))
    wait_until(lambda: source.counts["report_failures"] >= 1)
    reports.refuse = False
    ami_server.publish(device("SIP/200", "NOT_INUSE"))  # any event: the next read flushes
    wait_until(lambda: bool(reports))
    assert [(r.user, r.profile) for r in reports] == [("alice", "Do Not Disturb")]
