"""The `blf` call-state source against a real Kamailio PBX, with real calls placed by SIPp."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from emulator.harness.kamailio import KamailioServer, blf_server
from emulator.harness.sipp import Call, answering
from tests.blf_fixtures import USERS, Listening, Sink, resynced, wait_until
from workers.callstate.blf import BlfCallSource

PASSWORD = "blf-test-secret"  # noqa: S105 - a loopback test server


def options(pbx: KamailioServer, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": pbx.udp_port,
        "domain": pbx.domain,
        "bind_host": "127.0.0.1",
        **extra,
    }


@pytest.fixture(scope="module")
def pbx() -> Iterator[KamailioServer]:
    server = blf_server()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def sink() -> Sink:
    return Sink()


def started(call: Call, *users: str) -> list[tuple[str, str, str]]:
    return sorted(("call_started", u, f"blf:{call.call_id}") for u in users)


def ended(call: Call, *users: str) -> list[tuple[str, str, str]]:
    return sorted(("call_ended", u, f"blf:{call.call_id}") for u in users)


def test_an_answered_call_is_started_for_both_parties_and_its_hang_up_ends_it(
    pbx: KamailioServer, sink: Sink
) -> None:
    source = BlfCallSource(options(pbx), None, USERS, sink)
    with Listening(source), answering(pbx, "201"):
        wait_until(resynced(source))
        call = Call(pbx, "200", "201")
        try:
            assert sink.take(2) == started(call, "alice", "bob")
            call.hang_up()
            assert sink.take(2) == ended(call, "alice", "bob")
        finally:
            call.close()
    assert source.subscribed() == ["200", "201"]
    assert source.counts["subscribes"] == 2
    assert source.tracker.active() == {}


def test_back_to_back_calls_each_start_and_end(pbx: KamailioServer, sink: Sink) -> None:
    """Kamailio keeps ended dialogs listed for a while, and may list one dialog twice."""
    source = BlfCallSource(options(pbx), None, USERS, sink)
    with Listening(source), answering(pbx, "201", ring_ms=0, calls=8):
        wait_until(resynced(source))
        for _ in range(8):
            call = Call(pbx, "200", "201")
            try:
                assert sink.take(2) == started(call, "alice", "bob")
                call.hang_up()
                assert sink.take(2) == ended(call, "alice", "bob")
            finally:
                call.close()
    assert source.tracker.active() == {}


def test_a_listener_killed_mid_call_ends_the_call_once_restarted(
    pbx: KamailioServer, sink: Sink
) -> None:
    with answering(pbx, "201"):
        first = BlfCallSource(options(pbx), None, USERS, sink)
        with Listening(first):
            wait_until(resynced(first))
            call = Call(pbx, "200", "201")
            assert sink.take(2) == started(call, "alice", "bob")
        try:
            call.hang_up()  # nobody listens: this hang-up is missed
        finally:
            call.close()
        assert sink.known_calls() == {
            "alice": [f"blf:{call.call_id}"],
            "bob": [f"blf:{call.call_id}"],
        }
        second = BlfCallSource(options(pbx), None, USERS, sink, known_calls=sink.known_calls())
        with Listening(second):
            assert sink.take(2) == ended(call, "alice", "bob")
    assert sink.known_calls() == {}


def test_a_restarted_listener_takes_over_a_call_still_going(
    pbx: KamailioServer, sink: Sink
) -> None:
    with answering(pbx, "201"):
        first = BlfCallSource(options(pbx), None, USERS, sink)
        with Listening(first):
            wait_until(resynced(first))
            call = Call(pbx, "200", "201")
            assert sink.take(2) == started(call, "alice", "bob")
        second = BlfCallSource(options(pbx), None, USERS, sink, known_calls=sink.known_calls())
        try:
            with Listening(second):
                wait_until(resynced(second))
                assert sink.items.empty()  # the call goes on: nothing started twice
                assert second.tracker.active() == {
                    "alice": [f"blf:{call.call_id}"],
                    "bob": [f"blf:{call.call_id}"],
                }
                call.hang_up()
                assert sink.take(2) == ended(call, "alice", "bob")
        finally:
            call.close()


def test_a_call_ending_unseen_is_ended_by_the_resync_of_a_new_subscription(
    pbx: KamailioServer, sink: Sink
) -> None:
    """Asterisk-style dialog ids without call-ids; a lost subscription is made anew."""
    server = blf_server(include_callid=0)
    server.start()
    try:
        source = BlfCallSource(options(server, expires=10, refresh_at=0.2), None, USERS, sink)
        with Listening(source), answering(server, "201"):
            wait_until(resynced(source))
            call = Call(server, "200", "201")
            try:
                items = sink.take(2)
                assert [i[:2] for i in items] == [
                    ("call_started", "alice"),
                    ("call_started", "bob"),
                ]
                assert items[0][2].startswith("blf:200/") and items[1][2].startswith("blf:201/")
                # The PBX restarts and forgets every subscription and dialog; the phones hang
                # up through it (its Record-Route needs no state), but it publishes nothing.
                server.stop()
                server.start()
                call.hang_up()
            finally:
                call.close()
            # The next refresh is answered 481: subscribed anew, full state, nothing stuck.
            ended_items = sink.take(2)
            assert ended_items == sorted(("call_ended", i[1], i[2]) for i in items)
            assert source.counts["gone"] >= 1
    finally:
        server.cleanup()


def test_digest_auth_with_the_right_secret_subscribes() -> None:
    server = blf_server(password=PASSWORD)
    server.start()
    sink = Sink()
    try:
        source = BlfCallSource(options(server), SecretStr(PASSWORD), USERS, sink)
        with Listening(source):
            wait_until(resynced(source))
        assert source.counts["auth_challenges"] >= 2
        refused = BlfCallSource(options(server), SecretStr("wrong"), USERS, sink)
        with Listening(refused):
            wait_until(lambda: refused.counts["refused"] >= 2)
        assert refused.subscribed() == []
    finally:
        server.cleanup()


def test_a_server_minimum_lifetime_is_learned_from_423() -> None:
    server = blf_server(min_expires=120)
    server.start()
    try:
        source = BlfCallSource(options(server, expires=60), None, USERS, Sink())
        with Listening(source):
            wait_until(resynced(source))
        assert source.counts["interval_too_brief"] >= 1
        assert source.subscribed() == ["200", "201"]
    finally:
        server.cleanup()


def test_hundreds_of_extensions_are_all_subscribed_and_resynced(pbx: KamailioServer) -> None:
    users = {str(ext): f"user{ext}" for ext in range(3000, 3300)}
    source = BlfCallSource(options(pbx, subscribes_per_second=300), None, users, Sink())
    with Listening(source):
        wait_until(lambda: source.counts["subscribes"] == len(users), timeout=60)
        wait_until(resynced(source, len(users)))
    assert len(source.subscribed()) == len(users)
    assert source.counts["timeouts"] == 0


def test_invalid_options_are_one_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        BlfCallSource({"host": "pbx example", "expires": 1}, None, USERS, Sink())
    text = str(caught.value)
    assert "callstate.blf.host" in text and "callstate.blf.domain" in text
    assert "callstate.blf.expires" in text
