"""The `ami` call-state source against the AMI server replaying the recorded call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from emulator.ami.recorded import recorded_call
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from tests.ami_fixtures import endpoint_options
from workers.callstate.ami import AmiCallSource, backoff_delay

USERS = {"200": "alice", "201": "bob"}
CALL_ID = "1796149370.5"
LISTENER, LISTENER_SECRET = "bridge-listener", "listener-secret"  # noqa: S105 - loopback test
FAST = {"ping_interval": 0.2, "backoff_initial": 0.05, "backoff_max": 0.2, "stable_after": 0}


def item(kind: str, user: str) -> dict[str, str]:
    return {"type": kind, "user": user, "call_id": CALL_ID}


WHOLE_CALL = [item("call_started", "bob"), item("call_started", "alice"),
              item("call_ended", "bob"), item("call_ended", "alice")]  # fmt: skip


def upto_answer() -> list[dict[str, str]]:
    events = recorded_call()
    return events[: next(i for i, e in enumerate(events) if e["Event"] == "BridgeEnter")]


def after_answer() -> list[dict[str, str]]:
    return recorded_call()[len(upto_answer()) :]


def unordered(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """A resync reports several calls at once, in no particular order."""
    return sorted(tuple(i.values()) for i in items)


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Listening:
    """Runs a source in its own thread and event loop, as a process would; stops it after."""

    def __init__(self, source: AmiCallSource) -> None:
        self.source = source
        self._thread = threading.Thread(target=lambda: asyncio.run(source.run()), daemon=True)

    def __enter__(self) -> AmiCallSource:
        self._thread.start()
        return self.source

    def __exit__(self, *exc: object) -> None:
        self.source.stop()
        self._thread.join(10)
        assert not self._thread.is_alive()


SourceFactory = Callable[..., tuple[AmiCallSource, list[dict[str, Any]]]]


@pytest.fixture
def make_source(ami_server: AmiServer) -> SourceFactory:
    """A source logged in as a least-privilege user: read = call, write = reporting."""
    ami_server.users[LISTENER] = ManagerUser.of(LISTENER_SECRET, read="call", write="reporting")

    def make(
        emit: Callable[[dict[str, Any]], None] | None = None,
        secret: str = LISTENER_SECRET,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> tuple[AmiCallSource, list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []
        settings = endpoint_options(ami_server, username=LISTENER, **{**FAST, **options})
        source = AmiCallSource(settings, SecretStr(secret), USERS, emit or seen.append,
                               clock=clock)  # fmt: skip
        return source, seen

    return make


def test_the_recorded_call_reaches_the_sink(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    source, seen = make_source()
    with Listening(source):
        wait_until(lambda: source.connected)
        ami_server.replay(recorded_call())
        wait_until(lambda: len(seen) == 4)
    assert seen == WHOLE_CALL
    (login,) = [a for a in ami_server.actions() if a.action == "Login"]
    assert login.headers["Events"] == "call"


def test_killed_mid_call_the_reconnect_ends_the_call_that_ended_meanwhile(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    source, seen = make_source()
    with Listening(source):
        wait_until(lambda: source.connected)
        ami_server.replay(upto_answer())
        wait_until(lambda: len(seen) == 2)
        ami_server.go_down()
        wait_until(lambda: not source.connected)
        ami_server.replay(after_answer())  # both legs hang up while the listener is away
        ami_server.come_back()
        wait_until(lambda: len(seen) == 4)
        assert source.tracker.active() == {}
    assert seen[:2] == WHOLE_CALL[:2]
    assert unordered(seen[2:]) == unordered(WHOLE_CALL[2:])
    assert source.counts["resyncs"] == 2


def test_a_call_that_started_while_disconnected_is_started_by_the_resync(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    ami_server.go_down()
    ami_server.replay(upto_answer())
    source, seen = make_source()
    with Listening(source):
        time.sleep(0.3)  # a few refused connects
        ami_server.come_back()
        wait_until(lambda: len(seen) == 2)
        ami_server.replay(after_answer())
        wait_until(lambda: len(seen) == 4)
    assert unordered(seen[:2]) == unordered(WHOLE_CALL[:2])
    assert seen[2:] == WHOLE_CALL[2:]
    assert source.counts["unreachable"] >= 1


def test_a_dropped_connection_reconnects_without_repeating_a_start(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    source, seen = make_source()
    with Listening(source):
        wait_until(lambda: source.connected)
        ami_server.replay(upto_answer())
        wait_until(lambda: len(seen) == 2)
        ami_server.drop_connections()
        wait_until(lambda: source.counts["connects"] == 2 and source.connected)
        assert len(seen) == 2
        ami_server.replay(after_answer())
        wait_until(lambda: len(seen) == 4)
    assert seen == WHOLE_CALL


def test_a_refused_login_is_counted_and_retried(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    ami_server.auth_failure_delay = 0.01
    source, seen = make_source(secret="wrong")  # noqa: S106
    with Listening(source):
        wait_until(lambda: source.counts["login_failures"] >= 2)
    assert seen == [] and not source.connected


def test_a_failing_sink_gets_every_event_later_in_order(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    delivered: list[dict[str, Any]] = []
    failures = [2]

    def flaky(event: dict[str, Any]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("redis is down")
        delivered.append(event)

    source, _ = make_source(emit=flaky)
    with Listening(source):
        wait_until(lambda: source.connected)
        ami_server.replay(recorded_call())
        wait_until(lambda: len(delivered) == 4)  # the ping tick retries
    assert delivered == WHOLE_CALL
    assert source.counts["emit_failures"] == 2


def test_the_maximum_call_length_ends_a_call_whose_hangup_never_comes(
    ami_server: AmiServer, make_source: SourceFactory
) -> None:
    now = [1000.0]
    source, seen = make_source(clock=lambda: now[0], max_call_seconds=60)
    with Listening(source):
        wait_until(lambda: source.connected)
        ami_server.replay(upto_answer())
        wait_until(lambda: len(seen) == 2)
        now[0] += 61
        wait_until(lambda: len(seen) == 4)
    assert seen[:2] == WHOLE_CALL[:2]
    assert unordered(seen[2:]) == unordered(WHOLE_CALL[2:])


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    for attempt, step in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (60, 30.0)]:
        delay = backoff_delay(attempt, 0.5, 30.0)
        assert step / 2 <= delay <= step


def test_a_source_without_a_secret_does_not_start(ami_server: AmiServer) -> None:
    with pytest.raises(ConfigError, match="secret"):
        AmiCallSource(endpoint_options(ami_server), None, USERS, lambda e: None)
