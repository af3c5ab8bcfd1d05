"""Listeners under a leader lock, against the AMI server and a real Redis: one leads, a dead
one is replaced, the replacement ends what ended while nobody listened."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from core.state import callstate, intake
from core.state.coordination import LeaderLock
from emulator.ami.recorded import recorded_call
from emulator.ami.rules import ManagerUser
from emulator.ami.server import AmiServer
from tests.ami_fixtures import endpoint_options
from tests.workers.callstate.test_ami import (
    FAST,
    LISTENER,
    LISTENER_SECRET,
    USERS,
    WHOLE_CALL,
    after_answer,
    unordered,
    upto_answer,
    wait_until,
)
from workers.callstate.ami import AmiCallSource
from workers.callstate.leader import Listener
from workers.callstate.sources import Emit

TENANT, SOURCE = "contoso", "ami"
LOCK_SECONDS = 0.6


class Running:
    """A listener in its own thread and event loop, as in a process; stop() or crash() it."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.listener.run(self._stop))
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def stop(self) -> None:
        """SIGTERM: the source logs off, the lock is handed back."""
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    def crash(self) -> None:
        """Gone without a word: the lock stays until it expires."""
        self._loop.call_soon_threadsafe(lambda: self._task.cancel() if self._task else None)
        self._thread.join(10)
        assert not self._thread.is_alive()


def stream_items(client: redis.Redis) -> list[dict[str, Any]]:
    entries: Any = client.xrange(intake.STREAM)
    return [
        {**item["item"], "tenant": item["tenant"], "kind": item["kind"]}
        for _, fields in entries
        for item in intake.decode_entry(fields)
    ]


def calls_in_stream(client: redis.Redis) -> list[dict[str, str]]:
    items = stream_items(client)
    return [{k: v for k, v in i.items() if k not in ("tenant", "kind")} for i in items]


ListenerFactory = Callable[..., Running]


@pytest.fixture
def start_listener(ami_server: AmiServer, redis_client: redis.Redis) -> Iterator[ListenerFactory]:
    ami_server.users[LISTENER] = ManagerUser.of(LISTENER_SECRET, read="call", write="reporting")
    options = endpoint_options(ami_server, username=LISTENER, **FAST)
    running: list[Running] = []

    def start(host: str = "host-1") -> Running:
        def make(emit: Emit) -> AmiCallSource:
            return AmiCallSource(options, SecretStr(LISTENER_SECRET), USERS, emit)

        listener = Listener(
            redis_client, TENANT, SOURCE, make, lock_seconds=LOCK_SECONDS, host=host
        )
        running.append(Running(listener))
        return running[-1]

    yield start
    for one in running:
        if one._thread.is_alive():
            one.stop()


def connected(one: Running) -> bool:
    return one.listener.source is not None and one.listener.source.connected


def test_the_recorded_call_reaches_the_intake_as_pbx_items(
    ami_server: AmiServer, redis_client: redis.Redis, start_listener: ListenerFactory
) -> None:
    one = start_listener()
    wait_until(lambda: connected(one))
    ami_server.replay(recorded_call())
    wait_until(lambda: len(stream_items(redis_client)) == 4)
    items = stream_items(redis_client)
    assert {(i["tenant"], i["kind"]) for i in items} == {(TENANT, "pbx")}
    assert calls_in_stream(redis_client) == WHOLE_CALL
    assert callstate.reported(redis_client, TENANT, SOURCE) == []


def test_counts_and_status_are_visible_while_leading(
    redis_client: redis.Redis, start_listener: ListenerFactory, ami_server: AmiServer
) -> None:
    one = start_listener()
    wait_until(lambda: connected(one))
    ami_server.replay(upto_answer())

    def reported_status() -> bool:
        status = callstate.status(redis_client, TENANT, SOURCE)
        return status is not None and status.connected and status.active_calls == 2

    wait_until(reported_status)
    status = callstate.status(redis_client, TENANT, SOURCE)
    assert status is not None and status.host == "host-1"
    counters = intake.counters(redis_client)
    assert counters[callstate.counter_field(TENANT, SOURCE, "call_started")] == 2
    assert counters[callstate.counter_field(TENANT, SOURCE, "connects")] == 1
    assert counters[callstate.counter_field(TENANT, SOURCE, "leads")] == 1
    one.stop()
    status = callstate.status(redis_client, TENANT, SOURCE)
    assert status is not None and not status.connected  # said on the way out


def test_of_two_hosts_one_listens_and_each_call_is_reported_once(
    ami_server: AmiServer, redis_client: redis.Redis, start_listener: ListenerFactory
) -> None:
    first, second = start_listener("host-1"), start_listener("host-2")
    wait_until(lambda: connected(first) or connected(second))
    ami_server.replay(recorded_call())
    wait_until(lambda: len(stream_items(redis_client)) == 4)
    wait_until(lambda: "accepted" in intake.counters(redis_client))
    assert ami_server.logins() == 1
    assert [first.listener.source is None, second.listener.source is None].count(True) == 1
    assert "dropped:duplicate" not in intake.counters(redis_client)


def test_a_crashed_leader_is_replaced_and_the_call_that_ended_meanwhile_ends(
    ami_server: AmiServer, redis_client: redis.Redis, start_listener: ListenerFactory
) -> None:
    first = start_listener("host-1")
    wait_until(lambda: connected(first))
    second = start_listener("host-2")
    ami_server.replay(upto_answer())
    wait_until(lambda: len(stream_items(redis_client)) == 2)
    first.crash()
    ami_server.replay(after_answer())  # both legs hang up while nobody listens
    wait_until(lambda: len(stream_items(redis_client)) == 4)
    assert connected(second)
    assert unordered(calls_in_stream(redis_client)[2:]) == unordered(WHOLE_CALL[2:])
    assert callstate.reported(redis_client, TENANT, SOURCE) == []


def test_a_call_still_going_after_a_takeover_is_not_started_twice(
    ami_server: AmiServer, redis_client: redis.Redis, start_listener: ListenerFactory
) -> None:
    first = start_listener("host-1")
    wait_until(lambda: connected(first))
    ami_server.replay(upto_answer())
    wait_until(lambda: len(stream_items(redis_client)) == 2)
    first.stop()
    second = start_listener("host-2")
    wait_until(lambda: connected(second))
    ami_server.replay(after_answer())
    wait_until(lambda: len(stream_items(redis_client)) == 4)
    assert calls_in_stream(redis_client) == WHOLE_CALL


def test_a_listener_that_loses_its_lock_stops_listening(
    ami_server: AmiServer, redis_client: redis.Redis, start_listener: ListenerFactory
) -> None:
    one = start_listener()
    wait_until(lambda: connected(one))
    redis_client.delete(one.listener.lock.key)
    assert LeaderLock(redis_client, callstate.lock_name(TENANT, SOURCE), 60).acquire()
    wait_until(lambda: one.listener.source is None)
    wait_until(lambda: ami_server.sessions() == 0)
