"""Teams presence -> PBX profile, end to end: emulator, webhook, Redis, worker, adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
from rq.registry import ScheduledJobRegistry

from core.queue import QUEUE_PBX, enqueue_deliver
from emulator.harness.kamailio import KamailioServer
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, tamper_data_signature, wait_for
from tests.sip_watcher import PresenceWatcher, SipMessage
from workers.pbx.pidf import parse_pidf


@pytest.fixture
def watchers() -> Iterator[list[PresenceWatcher]]:
    made: list[PresenceWatcher] = []
    yield made
    for watcher in made:
        watcher.close()


def sip_bridge(factory: BridgeFactory, kamailio: KamailioServer, transport: str) -> Bridge:
    port = kamailio.tcp_port if transport == "tcp" else kamailio.udp_port
    options = (
        f'{{ host = "127.0.0.1", port = {port}, transport = "{transport}", '
        f'domain = "{kamailio.domain}", timeout = 3 }}'
    )
    return factory(pbx=f'adapter = "sip"\noptions = {options}')


def watch(kamailio: KamailioServer, user: str, made: list[PresenceWatcher]) -> PresenceWatcher:
    watcher = PresenceWatcher(("127.0.0.1", kamailio.udp_port), f"sip:{user}@{kamailio.domain}")
    made.append(watcher)
    assert watcher.subscribe().start_line.startswith("SIP/2.0 200")
    watcher.next_notify()  # the initial NOTIFY: whatever the server holds now
    return watcher


def with_note(note: str) -> Callable[[SipMessage], bool]:
    return lambda n: bool(n.body) and parse_pidf(n.body).note == note


def notes_until(watcher: PresenceWatcher, note: str) -> list[str]:
    """Notes of every NOTIFY up to (and with) the first one that carries `note`."""
    seen: list[str] = []
    while not seen or seen[-1] != note:
        notify: SipMessage = watcher.next_notify(timeout=30)
        seen.append(parse_pidf(notify.body).note if notify.body else "")
    return seen


# -- builtin adapter -------------------------------------------------------------------------


def test_teams_change_is_served_by_the_builtin_profile_api(bridge: Bridge) -> None:
    bridge.set_teams("alice", "Busy", "InAMeeting")
    applied = bridge.wait_applied("alice", "Busy")
    with bridge.api() as api:
        profile = api.get("/users/alice/profile").json()
        listed = api.get("/users").json()["value"]
    assert (profile["profile"], profile["availability"], profile["activity"]) == (
        "Busy",
        "Busy",
        "InAMeeting",
    )
    assert profile["version"] == applied.version
    assert [p["user"] for p in listed] == ["alice"]


def test_teams_change_arrives_on_the_builtin_event_stream(bridge: Bridge) -> None:
    with bridge.api() as api, api.stream("GET", "/events", timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"  # subscribed: changes from now on are ours
        bridge.set_teams("bob", "DoNotDisturb", "Presenting")
        data = next(line for line in lines if line.startswith("data: "))
    event = orjson.loads(data.removeprefix("data: "))
    assert (event["user"], event["profile"]) == ("bob", "Do Not Disturb")


def test_quick_successive_changes_of_one_user_all_reach_the_pbx(bridge: Bridge) -> None:
    # Basic notifications of one user are byte-identical; none may pass for a resend.
    for availability, activity, profile in (
        ("Busy", "InAMeeting", "Busy"),
        ("Away", "Away", "Away"),
        ("Available", "Available", "Available"),
        ("DoNotDisturb", "Presenting", "Do Not Disturb"),
    ):
        bridge.set_teams("alice", availability, activity)
        bridge.wait_applied("alice", profile)


# -- sip adapter against a real Kamailio -----------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_teams_change_reaches_a_kamailio_watcher_as_pidf(
    bridge_factory: BridgeFactory,
    kamailio: KamailioServer,
    watchers: list[PresenceWatcher],
    transport: str,
) -> None:
    bridge = sip_bridge(bridge_factory, kamailio, transport)
    watcher = watch(kamailio, "carol", watchers)
    bridge.set_teams("carol", "Busy", "InACall")
    document = parse_pidf(watcher.wait_for(with_note("Busy"), timeout=30).body)
    assert (document.entity, document.basic, document.activities) == (
        f"sip:carol@{kamailio.domain}",
        "open",
        ("on-the-phone",),
    )


def test_pbx_outage_then_recovery_applies_only_the_latest_profile(
    bridge_factory: BridgeFactory, watchers: list[PresenceWatcher]
) -> None:
    kamailio = KamailioServer()  # a private one: this test stops it
    kamailio.start()
    try:
        bridge = sip_bridge(bridge_factory, kamailio, "tcp")
        bridge.set_teams("alice", "Available", "Available")
        bridge.wait_applied("alice", "Available")

        kamailio.stop()
        for availability, activity in (
            ("Busy", "InAMeeting"),
            ("DoNotDisturb", "Presenting"),
            ("Away", "Away"),
        ):
            bridge.set_teams("alice", availability, activity)
        last = bridge.wait_desired("alice", "Away")
        # The outage lasts until the bridge has failed and scheduled its retry.
        pbx_retries = ScheduledJobRegistry(  # type: ignore[no-untyped-call]
            QUEUE_PBX, connection=bridge.redis
        )
        wait_for(lambda: pbx_retries.get_job_ids(), "a delivery retry to be scheduled")
        assert bridge.applied_version("alice") < last.version

        kamailio.start()  # it has forgotten every publication
        watcher = watch(kamailio, "alice", watchers)
        enqueue_deliver(bridge.redis, TENANT)  # what the reconciler does
        assert notes_until(watcher, "Away")[-1] == "Away"
        bridge.wait_applied("alice", "Away")
        assert bridge.applied_profiles("alice") == ["Available", "Away"]
    finally:
        kamailio.cleanup()


# -- Graph's delivery faults -----------------------------------------------------------------

FAULTS = {
    "duplicate": {"kind": "duplicate", "count": 3},
    "reorder": {"kind": "reorder", "count": 3},
    "delay": {"kind": "delay", "count": 1, "seconds": 30},
}


@pytest.mark.parametrize("rich", [False, True], ids=["basic", "rich"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_delivery_faults_end_in_the_latest_profile(
    bridge_factory: BridgeFactory, fault: str, rich: bool
) -> None:
    bridge = bridge_factory(rich=rich)
    bridge.control.request("POST", "/faults/delivery", FAULTS[fault])
    for availability, activity in (
        ("Busy", "InAMeeting"),
        ("DoNotDisturb", "Presenting"),
        ("Away", "Away"),
    ):
        bridge.set_teams("alice", availability, activity)
    if fault == "delay":
        bridge.control.request("POST", "/clock/advance", {"seconds": 31})  # the late one now
    bridge.delivery_idle()
    # bob's change queues behind everything sent for alice, so once it is applied, every
    # notification about alice has been processed.
    bridge.set_teams("bob", "Away", "Away")
    bridge.wait_applied("bob", "Away")
    assert bridge.builtin_profile("alice") == "Away"
    assert bridge.applied_profiles("alice")[-1] == "Away"


# -- rich notifications ----------------------------------------------------------------------


def test_rich_notification_is_applied_without_reading_graph(
    bridge_factory: BridgeFactory,
) -> None:
    bridge = bridge_factory(rich=True)
    fault = bridge.control.request(
        "POST",
        "/faults/routes",
        {"kind": "error", "path": "getPresencesByUserId", "count": 1000},
    )
    bridge.set_teams("alice", "DoNotDisturb", "Presenting")
    bridge.wait_applied("alice", "Do Not Disturb")
    [left] = [
        f for f in bridge.control.request("GET", "/faults")["routes"] if f["id"] == fault["id"]
    ]
    assert left["remaining"] == 1000


def _forge_token_signature(document: dict[str, object]) -> dict[str, object]:
    tokens = document.get("validationTokens")
    assert isinstance(tokens, list) and tokens
    head, body, signature = str(tokens[0]).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {**document, "validationTokens": [f"{head}.{body}.{flipped}", *tokens[1:]]}


@pytest.mark.parametrize(
    ("tamper", "counter"),
    [
        (tamper_data_signature, "dropped:rich_bad_signature"),
        (_forge_token_signature, "dropped:rich_token_signature"),
    ],
    ids=["data-signature", "validation-token"],
)
def test_tampered_rich_notification_is_dropped_and_counted(
    bridge_factory: BridgeFactory, tamper: object, counter: str
) -> None:
    bridge = bridge_factory(rich=True, relay=True)
    assert bridge.relay is not None
    bridge.relay.transform = tamper  # type: ignore[assignment]
    bridge.set_teams("alice", "Busy", "InAMeeting")
    wait_for(lambda: bridge.metrics().get(counter) == 1, f"{counter} to be counted")

    bridge.relay.transform = None
    bridge.set_teams("alice", "Away", "Away")
    bridge.wait_applied("alice", "Away")
    assert bridge.decided("alice") == [{"availability": "Away", "activity": "Away"}]
    assert bridge.applied_profiles("alice") == ["Away"]
