"""The `blf` source against a notifier that answers as the recorded Asterisk 20 did: the
recorded NOTIFYs replayed, a lost version, NOTIFYs it cannot place, terminations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.blf_fixtures import USERS, Listening, Sink, resynced, wait_until
from tests.sip_notifier import AsteriskNotifier, Watch, asterisk_body
from tests.sip_recorded import ASTERISK_200, ASTERISK_201
from workers.callstate.blf import BlfCallSource


def options(notifier: AsteriskNotifier, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": notifier.port,
        "domain": "127.0.0.1",
        "bind_host": "127.0.0.1",
        **extra,
    }


@pytest.fixture
def notifier() -> Iterator[AsteriskNotifier]:
    with AsteriskNotifier() as running:
        yield running


def subscription_state(headers: list[str]) -> str:
    return next(h.split(":", 1)[1].strip() for h in headers if h.startswith("Subscription-State"))


def only_watch(notifier: AsteriskNotifier, extension: str) -> Watch:
    (watch,) = notifier.watching(extension)
    return watch


def test_the_recorded_call_is_reported_and_the_timeout_at_its_end_resubscribes(
    notifier: AsteriskNotifier,
) -> None:
    sink = Sink()
    source = BlfCallSource(options(notifier), None, USERS, sink)
    with Listening(source):
        wait_until(resynced(source))
        for extension, recording in (("201", ASTERISK_201), ("200", ASTERISK_200)):
            watch = only_watch(notifier, extension)
            for headers, body in recording[1:]:  # the first is the one every SUBSCRIBE gets
                assert notifier.notify(watch, body, subscription_state(headers)) == 200
        assert sink.take(4) == sorted(
            [
                ("call_started", "bob", "blf:201/201"),
                ("call_ended", "bob", "blf:201/201"),
                ("call_started", "alice", "blf:200/200"),
                ("call_ended", "alice", "blf:200/200"),
            ]
        )
        # "terminated;reason=timeout" ended both subscriptions: both are made anew.
        wait_until(resynced(source, 4))
    assert source.counts["terminated"] == 2 and source.counts["resubscribes"] == 2
    assert len(notifier.received.subscribes) == 4


def test_a_lost_version_makes_the_source_ask_for_full_state(notifier: AsteriskNotifier) -> None:
    sink = Sink()
    source = BlfCallSource(options(notifier), None, USERS, sink)
    with Listening(source):
        wait_until(resynced(source))
        watch = only_watch(notifier, "201")
        partial = asterisk_body("201", 5, "confirmed", None).replace('"full"', '"partial"')
        with notifier._lock:
            watch.version = 6  # the full state the refresh brings continues after it
        assert notifier.notify(watch, partial) == 200
        assert sink.take(1) == [("call_started", "bob", "blf:201/201")]
        # Versions 1 to 4 never came: the source refreshes, the full state says it is over.
        notifier.wait_for(lambda: watch.refreshes == 1)
        assert sink.take(1) == [("call_ended", "bob", "blf:201/201")]
    assert source.counts["gaps"] == 1


def test_a_notify_for_a_subscription_the_source_does_not_hold_gets_481(
    notifier: AsteriskNotifier,
) -> None:
    source = BlfCallSource(options(notifier), None, USERS, Sink())
    with Listening(source):
        wait_until(resynced(source))
        known = only_watch(notifier, "200")
        stranger = Watch("200", "not-ours", known.watcher_tag, "x", known.contact)
        assert notifier.notify(stranger, asterisk_body("200", 9, "confirmed", None)) == 481
    assert source.counts["unknown_notifies"] == 1
    assert source.tracker.active() == {}


def test_a_notify_ahead_of_the_200_is_taken() -> None:
    sink = Sink()
    with AsteriskNotifier(notify_before_ok=True) as notifier:
        source = BlfCallSource(options(notifier), None, USERS, sink)
        with Listening(source):
            wait_until(lambda: source.counts["subscribes"] == len(USERS))
            assert source.counts["resyncs"] == len(USERS)
            assert notifier.set_state("201", "confirmed") == [200]
            assert sink.take(1) == [("call_started", "bob", "blf:201/201")]


def test_ringing_counts_with_busy_from_ringing(notifier: AsteriskNotifier) -> None:
    sink = Sink()
    source = BlfCallSource(options(notifier, busy_from="ringing"), None, USERS, sink)
    with Listening(source):
        wait_until(resynced(source))
        assert notifier.set_state("201", "early", "recipient") == [200]
        assert sink.take(1) == [("call_started", "bob", "blf:201/201")]
        assert notifier.set_state("201", "confirmed") == [200]
        assert notifier.set_state("201", "terminated") == [200]
        assert sink.take(1) == [("call_ended", "bob", "blf:201/201")]


def test_an_extension_the_pbx_no_longer_has_ends_its_calls(notifier: AsteriskNotifier) -> None:
    sink = Sink()
    source = BlfCallSource(options(notifier), None, USERS, sink)
    with Listening(source):
        wait_until(resynced(source))
        assert notifier.set_state("201", "confirmed") == [200]
        assert sink.take(1) == [("call_started", "bob", "blf:201/201")]
        watch = only_watch(notifier, "201")
        body = asterisk_body("201", notifier.next_version(watch) - 1, "confirmed", None)
        assert notifier.notify(watch, body, "terminated;reason=noresource") == 200
        assert sink.take(1) == [("call_ended", "bob", "blf:201/201")]
    assert source.counts["terminated"] == 1 and source.counts["resubscribes"] == 0
