"""The sip adapter seen by an independent watcher: SIPp SUBSCRIBEs at a real Kamailio.

The adapter PUBLISHes; SIPp (emulator/harness/kamailio/sipp/watch.xml) holds a presence subscription
and the test reads the NOTIFYs Kamailio sent it from SIPp's own message trace. The PIDF is
read here with ElementTree, not with the adapter's parser.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from emulator.harness.kamailio import KamailioServer
from emulator.harness.sipp import TracedMessage, watching
from workers.pbx.base import ProfileChange
from workers.pbx.sip import SipAdapter

NS = {
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "rpid": "urn:ietf:params:xml:ns:pidf:rpid",
}
MEETING = ("Teams Meeting", "Busy", "InAMeeting")
DND = ("Do Not Disturb", "DoNotDisturb", "DoNotDisturb")
AVAILABLE = ("Available", "Available", "Available")


@dataclass(frozen=True)
class Seen:
    """What one NOTIFY's PIDF says."""

    tuples: int
    basic: tuple[str, ...]
    activities: tuple[str, ...]
    notes: tuple[str, ...]


def seen(notify: TracedMessage, entity: str) -> Seen:
    assert notify.header("Event") == "presence"
    assert notify.header("Content-Type") == "application/pidf+xml"
    root = ET.fromstring(notify.body)  # noqa: S314 - our own server's body on loopback
    assert root.tag == "{urn:ietf:params:xml:ns:pidf}presence"
    assert root.get("entity") == entity
    return Seen(
        tuples=len(root.findall("pidf:tuple", NS)),
        basic=tuple(b.text or "" for b in root.findall("pidf:tuple/pidf:status/pidf:basic", NS)),
        activities=tuple(
            a.tag.rpartition("}")[2] for a in root.findall("dm:person/rpid:activities/*", NS)
        ),
        notes=tuple(n.text or "" for n in root.findall("pidf:tuple/pidf:note", NS))
        + tuple(n.text or "" for n in root.findall("dm:person/dm:note", NS)),
    )


def expected(profile: str, activities: tuple[str, ...]) -> Seen:
    return Seen(tuples=1, basic=("open",), activities=activities, notes=(profile, profile))


SHOWN = {
    MEETING: expected("Teams Meeting", ("meeting",)),
    DND: expected("Do Not Disturb", ("busy",)),
    AVAILABLE: expected("Available", ()),
}


@pytest.fixture
def user() -> str:
    return "w" + uuid.uuid4().hex[:10]  # a fresh presentity per test


@pytest.fixture
def adapters() -> Iterator[list[SipAdapter]]:
    made: list[SipAdapter] = []
    yield made
    for adapter in made:
        adapter.close()


def adapter_for(
    server: KamailioServer, made: list[SipAdapter], transport: str = "udp", **options: object
) -> SipAdapter:
    port = server.tcp_port if transport == "tcp" else server.udp_port
    adapter = SipAdapter(
        {
            "host": "127.0.0.1",
            "port": port,
            "transport": transport,
            "domain": server.domain,
            "timeout": 5,
            **options,
        },
        None,
    )
    made.append(adapter)
    return adapter


@contextmanager
def started(publ_cache: int = 1) -> Iterator[KamailioServer]:
    server = KamailioServer(publ_cache=publ_cache)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def kamailio() -> Iterator[KamailioServer]:
    with started() as server:
        yield server


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_watcher_sees_meeting_then_dnd_then_available(
    kamailio: KamailioServer, adapters: list[SipAdapter], user: str, transport: str
) -> None:
    adapter = adapter_for(kamailio, adapters, transport)
    entity = f"sip:{user}@{kamailio.domain}"
    with watching(kamailio, user) as watcher:
        for step, profile in enumerate((MEETING, DND, AVAILABLE), start=2):
            adapter.apply_profile(ProfileChange(user, *profile))
            notifies = watcher.wait_notifies(step)
            assert len(notifies) == step  # one NOTIFY per PUBLISH, none left over
            assert seen(notifies[-1], entity) == SHOWN[profile]
    assert (adapter.counts["initial"], adapter.counts["modify"]) == (1, 2)


# Kamailio 5.6.3 keeps publications in a database (publ_cache=1) or only in memory
# (publ_cache=2); in memory, a body-less refresh loses the document, so the adapter is
# configured to refresh with the body there.
REFRESH_MODES = pytest.mark.parametrize(
    ("publ_cache", "refresh_with_body"), [(1, False), (2, True)], ids=["db", "memory"]
)


@REFRESH_MODES
def test_refreshed_publication_keeps_the_last_profile_for_sipp_watchers(
    adapters: list[SipAdapter], user: str, publ_cache: int, refresh_with_body: bool
) -> None:
    with started(publ_cache) as server:
        adapter = adapter_for(server, adapters, refresh_with_body=refresh_with_body)
        entity = f"sip:{user}@{server.domain}"
        with watching(server, user) as watcher:
            for step, profile in enumerate((MEETING, DND, AVAILABLE), start=2):
                adapter.apply_profile(ProfileChange(user, *profile))
                watcher.wait_notifies(step)
            before = adapter.publication(user)
            adapter.refresh(user)
            after = adapter.publication(user)
            # Kamailio NOTIFYs on the refresh too: the last profile, not an earlier one.
            assert seen(watcher.wait_notifies(5)[-1], entity) == SHOWN[AVAILABLE]
            assert before is not None and after is not None
            assert after.expires_at >= before.expires_at
            # A watcher arriving after the refresh is told the same, once.
            with watching(server, user) as late:
                assert seen(late.notifies()[0], entity) == SHOWN[AVAILABLE]
            # The refreshed ETag carries the next change: no 412, still one publication.
            adapter.apply_profile(ProfileChange(user, *MEETING))
            assert seen(watcher.wait_notifies(6)[-1], entity) == SHOWN[MEETING]
        # One publication all along (the adapter counts a refresh with a body as a modify).
        assert (adapter.counts["initial"], adapter.counts["stale_etag"]) == (1, 0)
        assert adapter.counts["refresh"] == (0 if refresh_with_body else 1)


def test_kamailio_in_memory_loses_the_document_on_a_bodyless_refresh(
    adapters: list[SipAdapter], user: str
) -> None:
    # Why refresh_with_body exists: the behaviour of Kamailio 5.6.3, seen by SIPp.
    with started(publ_cache=2) as server:
        adapter = adapter_for(server, adapters)
        with watching(server, user) as watcher:
            adapter.apply_profile(ProfileChange(user, *DND))
            watcher.wait_notifies(2)
            adapter.refresh(user)
            assert watcher.wait_notifies(3)[-1].body == b""
