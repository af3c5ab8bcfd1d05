"""The sip adapter against a real Kamailio presence server on loopback."""

from __future__ import annotations

import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ConfigError, PbxError
from emulator.harness.kamailio import KamailioServer
from tests.sip_watcher import PresenceWatcher, SipMessage
from workers.delivery import is_pbx_wide
from workers.pbx.base import ProfileChange
from workers.pbx.pidf import PIDF_NS, parse_pidf
from workers.pbx.sip import SipAdapter
from workers.pbx.sip_wire import MAX_MESSAGE, SipRequest, build_response, parse_message

MEETING = ProfileChange("", "Teams Meeting", availability="Busy", activity="InAMeeting")
ON_CALL = ProfileChange("", "On Call", availability="Busy", activity="InACall")
AVAILABLE = ProfileChange("", "Available", availability="Available", activity="Available")
AUTH_PASSWORD = "kamailio-test-pw"  # noqa: S105 - a throwaway password for a loopback server

AdapterFactory = Callable[..., SipAdapter]
WatcherFactory = Callable[[KamailioServer, str], PresenceWatcher]


def change_for(user: str, template: ProfileChange) -> ProfileChange:
    return ProfileChange(user, template.profile, template.availability, template.activity)


def has_note(note: str) -> Callable[[SipMessage], bool]:
    return lambda notify: bool(notify.body) and parse_pidf(notify.body).note == note


def notes_of(notify: SipMessage) -> list[str]:
    """Every tuple's note: the server may aggregate several publications into one body."""
    if not notify.body:
        return []
    root = ET.fromstring(notify.body)  # noqa: S314
    return [n.text or "" for n in root.iter(f"{{{PIDF_NS}}}note")]


def tuple_count(notify: SipMessage) -> int:
    return len(ET.fromstring(notify.body).findall(f"{{{PIDF_NS}}}tuple"))  # noqa: S314


@pytest.fixture
def user() -> str:
    return "u" + uuid.uuid4().hex[:10]  # a fresh presentity per test on the shared server


@pytest.fixture
def make_adapter() -> Iterator[AdapterFactory]:
    adapters: list[SipAdapter] = []

    def make(
        server: KamailioServer, transport: str = "udp", secret: str | None = None, **options: Any
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
            SecretStr(secret) if secret is not None else None,
        )
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def watch() -> Iterator[WatcherFactory]:
    watchers: list[PresenceWatcher] = []

    def make(server: KamailioServer, user: str) -> PresenceWatcher:
        watcher = PresenceWatcher(("127.0.0.1", server.udp_port), f"sip:{user}@{server.domain}")
        watchers.append(watcher)
        response = watcher.subscribe()
        assert response.start_line.startswith("SIP/2.0 200"), response.start_line
        watcher.next_notify()  # the initial NOTIFY with whatever the server holds now
        return watcher

    yield make
    for watcher in watchers:
        watcher.close()


TRANSPORTS = pytest.mark.parametrize("transport", ["udp", "tcp"])


@TRANSPORTS
def test_initial_publish_is_accepted_with_an_etag(
    kamailio: KamailioServer, make_adapter: AdapterFactory, user: str, transport: str
) -> None:
    adapter = make_adapter(kamailio, transport)
    adapter.apply_profile(change_for(user, MEETING))
    publication = adapter.publication(user)
    assert publication is not None and publication.etag
    assert publication.expires_at > time.time() + 3000  # the server granted our 3600 s
    assert adapter.counts["initial"] == 1
    assert adapter.read_profile(user) == "Teams Meeting"


@TRANSPORTS
def test_watcher_receives_the_published_pidf(
    kamailio: KamailioServer,
    make_adapter: AdapterFactory,
    watch: WatcherFactory,
    user: str,
    transport: str,
) -> None:
    watcher = watch(kamailio, user)
    make_adapter(kamailio, transport).apply_profile(change_for(user, MEETING))
    doc = parse_pidf(watcher.wait_for(lambda n: bool(n.body)).body)
    assert (doc.entity, doc.basic, doc.activities, doc.note) == (
        f"sip:{user}@{kamailio.domain}",
        "open",
        ("meeting",),
        "Teams Meeting",
    )


@TRANSPORTS
def test_second_change_modifies_the_same_publication(
    kamailio: KamailioServer,
    make_adapter: AdapterFactory,
    watch: WatcherFactory,
    user: str,
    transport: str,
) -> None:
    watcher = watch(kamailio, user)
    adapter = make_adapter(kamailio, transport)
    adapter.apply_profile(change_for(user, MEETING))
    watcher.wait_for(has_note("Teams Meeting"))
    adapter.apply_profile(change_for(user, ON_CALL))
    notify = watcher.wait_for(has_note("On Call"))
    # A second initial PUBLISH would leave two publications; with SIP-If-Match there is one.
    assert tuple_count(notify) == 1
    assert parse_pidf(notify.body).activities == ("on-the-phone",)
    assert (adapter.counts["initial"], adapter.counts["modify"]) == (1, 1)


def test_repeating_a_change_is_harmless(
    kamailio: KamailioServer, make_adapter: AdapterFactory, watch: WatcherFactory, user: str
) -> None:
    watcher = watch(kamailio, user)
    adapter = make_adapter(kamailio)
    for _ in range(3):
        adapter.apply_profile(change_for(user, MEETING))
        notify = watcher.wait_for(has_note("Teams Meeting"))
        assert tuple_count(notify) == 1


@TRANSPORTS
def test_refresh_extends_the_publication_and_keeps_the_state(
    kamailio: KamailioServer,
    make_adapter: AdapterFactory,
    watch: WatcherFactory,
    user: str,
    transport: str,
) -> None:
    adapter = make_adapter(kamailio, transport)
    adapter.apply_profile(change_for(user, MEETING))
    before = adapter.publication(user)
    assert before is not None
    adapter.refresh(user)
    after = adapter.publication(user)
    assert after is not None and after.expires_at >= before.expires_at
    # The new ETag still works: a modify goes through without a 412 ...
    adapter.apply_profile(change_for(user, ON_CALL))
    assert adapter.counts["stale_etag"] == 0
    # ... and a watcher arriving now sees the state, once.
    notify = PresenceWatcher(("127.0.0.1", kamailio.udp_port), f"sip:{user}@{kamailio.domain}")
    try:
        notify.subscribe()
        first = notify.next_notify()
    finally:
        notify.close()
    assert parse_pidf(first.body).note == "On Call" and tuple_count(first) == 1


def test_refresh_with_body_survives_a_server_that_drops_bodies_on_refresh(
    make_adapter: AdapterFactory, watch: WatcherFactory, user: str
) -> None:
    # Kamailio 5.6 with publ_cache=2 empties the stored body on a body-less refresh.
    server = KamailioServer(publ_cache=2)
    server.start()
    try:
        watcher = watch(server, user)
        adapter = make_adapter(server, refresh_with_body=True)
        adapter.apply_profile(change_for(user, MEETING))
        watcher.wait_for(has_note("Teams Meeting"))
        adapter.refresh(user)
        assert parse_pidf(watcher.next_notify().body).note == "Teams Meeting"
    finally:
        server.cleanup()


def test_refresh_due_picks_publications_past_their_refresh_point(
    kamailio: KamailioServer, make_adapter: AdapterFactory, user: str
) -> None:
    adapter = make_adapter(kamailio, expires=1000, refresh_at=0.8)
    adapter.apply_profile(change_for(user, MEETING))
    publication = adapter.publication(user)
    assert publication is not None
    start = publication.expires_at - publication.lifetime
    assert adapter.refresh_due(start + 0.5 * publication.lifetime) == []
    assert adapter.refresh_due(start + 0.85 * publication.lifetime) == [user]
    assert adapter.counts["refresh"] == 1


def test_a_lapsed_publication_is_published_anew(
    kamailio: KamailioServer, user: str, watch: WatcherFactory
) -> None:
    offset = [0.0]
    adapter = SipAdapter(
        {"host": "127.0.0.1", "port": kamailio.udp_port, "domain": kamailio.domain},
        clock=lambda: time.time() + offset[0],
    )
    try:
        adapter.apply_profile(change_for(user, MEETING))
        offset[0] = 4000.0  # past the 3600 s lifetime
        assert adapter.read_profile(user) is None
        watcher = watch(kamailio, user)
        assert adapter.refresh_due() == [user]
        assert adapter.counts["initial"] == 2
        watcher.wait_for(has_note("Teams Meeting"))
    finally:
        adapter.close()


def test_refresh_without_a_publication_is_refused(
    kamailio: KamailioServer, make_adapter: AdapterFactory, user: str
) -> None:
    with pytest.raises(PbxError) as caught:
        make_adapter(kamailio).refresh(user)
    assert not caught.value.transient


@TRANSPORTS
def test_server_that_forgot_the_etag_412_gets_a_new_publication(
    make_adapter: AdapterFactory, watch: WatcherFactory, user: str, transport: str
) -> None:
    server = KamailioServer(publ_cache=2)  # publications in memory: a restart forgets them
    server.start()
    try:
        adapter = make_adapter(server, transport)
        adapter.apply_profile(change_for(user, MEETING))
        old = adapter.publication(user)
        server.stop()
        server.start()
        watcher = watch(server, user)
        adapter.apply_profile(change_for(user, ON_CALL))
        assert adapter.counts["stale_etag"] == 1
        new = adapter.publication(user)
        assert old is not None and new is not None and new.etag != old.etag
        assert tuple_count(watcher.wait_for(has_note("On Call"))) == 1
    finally:
        server.cleanup()


def test_outdated_etag_from_an_old_snapshot_412_recovers(
    kamailio: KamailioServer, make_adapter: AdapterFactory, user: str
) -> None:
    first = make_adapter(kamailio)
    first.apply_profile(change_for(user, MEETING))
    snapshot = first.export_state()
    first.apply_profile(change_for(user, ON_CALL))  # the server replaces the snapshot's ETag
    restored = make_adapter(kamailio)
    restored.import_state(snapshot)
    restored.apply_profile(change_for(user, AVAILABLE))
    assert (restored.counts["stale_etag"], restored.counts["initial"]) == (1, 1)
    assert restored.read_profile(user) == "Available"


def test_exported_state_lets_another_adapter_modify(
    kamailio: KamailioServer, make_adapter: AdapterFactory, watch: WatcherFactory, user: str
) -> None:
    watcher = watch(kamailio, user)
    first = make_adapter(kamailio)
    first.apply_profile(change_for(user, MEETING))
    second = make_adapter(kamailio, "tcp")
    second.import_state(first.export_state())
    second.apply_profile(change_for(user, ON_CALL))
    assert (second.counts["modify"], second.counts["stale_etag"]) == (1, 0)
    assert tuple_count(watcher.wait_for(has_note("On Call"))) == 1


def test_interval_too_brief_423_retries_with_min_expires(
    make_adapter: AdapterFactory, user: str
) -> None:
    server = KamailioServer(publish_min_expires=1800)
    server.start()
    try:
        adapter = make_adapter(server, expires=600)
        adapter.apply_profile(change_for(user, MEETING))
        publication = adapter.publication(user)
        assert adapter.counts["interval_too_brief"] == 1
        assert publication is not None and publication.lifetime >= 1800
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def auth_kamailio() -> Iterator[KamailioServer]:
    server = KamailioServer(password=AUTH_PASSWORD)
    server.start()
    yield server
    server.cleanup()


@TRANSPORTS
def test_digest_challenge_is_answered_with_the_secret(
    auth_kamailio: KamailioServer, make_adapter: AdapterFactory, user: str, transport: str
) -> None:
    adapter = make_adapter(auth_kamailio, transport, secret=AUTH_PASSWORD)
    adapter.apply_profile(change_for(user, MEETING))
    adapter.apply_profile(change_for(user, ON_CALL))
    assert adapter.counts["auth_challenge"] == 2
    assert adapter.read_profile(user) == "On Call"


@pytest.mark.parametrize("secret", ["wrong-password", None])
def test_refused_credentials_are_permanent_and_not_echoed(
    auth_kamailio: KamailioServer, make_adapter: AdapterFactory, user: str, secret: str | None
) -> None:
    adapter = make_adapter(auth_kamailio, secret=secret)
    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(change_for(user, MEETING))
    assert not caught.value.transient
    assert "407" in str(caught.value)
    assert "wrong-password" not in str(caught.value) + repr(adapter)


@pytest.mark.parametrize(("pbx_user", "transient"), [("unavailable", True), ("forbidden", False)])
def test_error_responses_are_classified(
    kamailio: KamailioServer, make_adapter: AdapterFactory, pbx_user: str, transient: bool
) -> None:
    with pytest.raises(PbxError) as caught:
        make_adapter(kamailio).apply_profile(change_for(pbx_user, MEETING))
    assert caught.value.transient is transient


@TRANSPORTS
def test_stopped_server_is_a_transient_error_and_recovery_follows(
    make_adapter: AdapterFactory, watch: WatcherFactory, user: str, transport: str
) -> None:
    server = KamailioServer()
    server.start()
    try:
        adapter = make_adapter(server, transport)
        adapter.apply_profile(change_for(user, MEETING))
        server.stop()
        with pytest.raises(PbxError) as caught:
            adapter.apply_profile(change_for(user, ON_CALL))
        assert caught.value.transient
        server.start()
        watcher = watch(server, user)
        adapter.apply_profile(change_for(user, ON_CALL))  # the reconciler's re-apply
        watcher.wait_for(has_note("On Call"))
    finally:
        server.cleanup()


def test_silent_udp_server_times_out_after_retransmitting(
    make_adapter: AdapterFactory, user: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        adapter = SipAdapter(
            {
                "host": "127.0.0.1",
                "port": black_hole.getsockname()[1],
                "domain": "presence.test",
                "timeout": 0.5,
                "t1": 0.05,
            }
        )
        try:
            with pytest.raises(PbxError) as caught:
                adapter.apply_profile(change_for(user, MEETING))
        finally:
            adapter.close()
        black_hole.settimeout(1)
        copies = [black_hole.recv(65535), black_hole.recv(65535)]
    assert caught.value.transient
    assert copies[0] == copies[1]  # timer E retransmits the same request


def test_user_with_a_host_keeps_it_and_odd_characters_are_escaped(
    kamailio: KamailioServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(kamailio)
    assert adapter.aor("alice@other.test") == "sip:alice@other.test"
    assert adapter.aor("a b<c>") == f"sip:a%20b%3Cc%3E@{kamailio.domain}"


def test_list_users_is_not_supported(
    kamailio: KamailioServer, make_adapter: AdapterFactory
) -> None:
    assert make_adapter(kamailio).list_users() is None


def test_invalid_options_are_listed_with_their_paths() -> None:
    with pytest.raises(ConfigError) as caught:
        SipAdapter({"host": "127.0.0.1", "transport": "sctp", "expires": 5})
    text = str(caught.value)
    for path in ("pbx.options.transport", "pbx.options.expires", "pbx.options.domain"):
        assert path in text


def test_repr_hides_the_secret() -> None:
    adapter = SipAdapter(
        {"host": "127.0.0.1", "domain": "presence.test"}, SecretStr("s3cret-value")
    )
    assert "s3cret-value" not in repr(adapter) + adapter.export_state()


@TRANSPORTS
def test_withdraw_removes_the_publication(
    kamailio: KamailioServer,
    make_adapter: AdapterFactory,
    watch: WatcherFactory,
    user: str,
    transport: str,
) -> None:
    watcher = watch(kamailio, user)
    adapter = make_adapter(kamailio, transport)
    adapter.apply_profile(change_for(user, MEETING))
    watcher.wait_for(has_note("Teams Meeting"))
    adapter.withdraw(user)
    assert adapter.counts["withdraw"] == 1 and adapter.publication(user) is None
    assert "Teams Meeting" not in notes_of(watcher.next_notify())
    adapter.withdraw(user)  # nothing left to withdraw: harmless
    assert adapter.counts["withdraw"] == 1


def test_refresh_due_tries_every_user_then_reports_failures(
    make_adapter: AdapterFactory, user: str
) -> None:
    server = KamailioServer()
    server.start()
    try:
        adapter = make_adapter(server)
        for name in (user, user + "b"):
            adapter.apply_profile(change_for(name, MEETING))
        publication = adapter.publication(user)
        assert publication is not None
        server.stop()
        with pytest.raises(PbxError) as caught:
            adapter.refresh_due(publication.expires_at - 0.1 * publication.lifetime)
        assert caught.value.transient and "2 of 2" in str(caught.value)
        assert adapter.counts["refresh"] == 2
    finally:
        server.cleanup()


def test_a_503_with_retry_after_is_a_pbx_wide_error_that_says_when() -> None:
    """A registrar that is overloaded: every job leaves it alone until it asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as registrar:
        registrar.bind(("127.0.0.1", 0))
        registrar.settimeout(5)

        def answer() -> None:
            data, peer = registrar.recvfrom(MAX_MESSAGE)
            request = parse_message(data)
            assert isinstance(request, SipRequest)
            reply = [("Retry-After", "30;duration=60 (overloaded)")]
            registrar.sendto(build_response(request, 503, "Service Unavailable", reply), peer)

        responder = threading.Thread(target=answer)
        responder.start()
        port = registrar.getsockname()[1]
        options = {"host": "127.0.0.1", "port": port, "domain": "example.test", "timeout": 5}
        adapter = SipAdapter(options)
        try:
            with pytest.raises(PbxError) as caught:
                adapter.apply_profile(change_for("alice", MEETING))
        finally:
            responder.join()
            adapter.close()
    assert (caught.value.status, caught.value.retry_after) == (503, 30.0)
    assert is_pbx_wide(caught.value)
