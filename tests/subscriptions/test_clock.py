"""The clock: hours of renewals without a gap, one leader among several clocks, its process."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from core.graph_tokens import GraphTokens
from core.queue import QUEUE_PBX, queue
from core.settings import load_settings
from core.state import intake
from core.state import subscriptions as sub_state
from core.state.coordination import LeaderLock
from core.state.subscriptions import SubscriptionRecord
from emulator.harness.processes import Service, private_env, wait_for
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from subscriptions import __main__ as clock_process
from subscriptions.clock import Schedule, run
from subscriptions.schedules import Clockwork
from tests.subscriptions.conftest import Bridge, covered

DEADLINE_SECONDS = 10.0
STEP_SECONDS = 5 * 60.0


def wait_for_notification(client: redis.Redis, user_id: str, after: str) -> str:
    """Wait until the webhook accepted a change notification for `user_id`; returns its entry id."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:  # the webhook's hand-off is a stream write, with no event to await
        entries: list[tuple[bytes, dict[bytes, bytes]]]
        entries = client.xrange(intake.STREAM, min=f"({after}")  # type: ignore[assignment]
        for entry_id, fields in entries:
            items = orjson.loads(fields[b"items"])
            if any(e["kind"] == "notification" and e["item"].get("userId") == user_id
                   for e in items):  # fmt: skip
                return entry_id.decode()
        assert time.monotonic() < deadline, f"no notification for {user_id}"
        time.sleep(0.02)


def test_three_hours_of_renewals_keep_every_user_covered_and_delivered(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=1400, accounts=3)
    bridge.reconcile()
    ids = {s.id for s in bridge.live()}
    last = "0-0"
    renewals = 0
    for step in range(int(3 * 3600 / STEP_SECONDS)):
        bridge.control.advance_clock(STEP_SECONDS)
        report = bridge.reconcile()
        renewals += len(report.renewed)
        assert report.created == report.recreated == [] and not report.failed
        assert {s.id for s in bridge.live()} == ids
        assert set(covered(bridge).values()) == {1}
        user = bridge.users[step * 37 % len(bridge.users)]
        state = ("Busy", "InACall") if step % 2 else ("Available", "Available")
        bridge.control.request("POST", "/presence", {"id": user, "availability": state[0],
                                                     "activity": state[1]})  # fmt: skip
        last = wait_for_notification(bridge.redis, user, last)
    assert renewals >= 3 * 4  # every subscription renewed at least every 45 minutes


def test_two_clocks_one_leader_acts(redis_client: redis.Redis) -> None:
    acted: list[str] = []
    ticks = {"a": 0, "b": 0}
    leaders: set[str] = set()
    cond = threading.Condition()
    stop = threading.Event()

    def clock(name: str) -> threading.Thread:
        def on_tick(leader: bool) -> None:
            with cond:
                ticks[name] += 1
                if leader:
                    leaders.add(name)
                cond.notify_all()

        # Due at once, then not again during the test: any second run would be a double action.
        schedule = Schedule("once", 3600.0, lambda: acted.append(name))
        return threading.Thread(target=run, args=(redis_client, [schedule], stop),
                                kwargs={"tick": 0.01, "on_tick": on_tick})  # fmt: skip

    threads = [clock("a"), clock("b")]
    for t in threads:
        t.start()
    with cond:
        assert cond.wait_for(lambda: min(ticks.values()) >= 20, timeout=DEADLINE_SECONDS)
    stop.set()
    for t in threads:
        t.join()
    assert len(acted) == 1
    assert leaders == set(acted)


def test_a_stopped_leader_is_replaced(redis_client: redis.Redis) -> None:
    acted: list[str] = []
    done = threading.Event()
    stop_a, stop_b = threading.Event(), threading.Event()

    def act(name: str, then: threading.Event) -> Callable[[], None]:
        def action() -> None:
            acted.append(name)
            then.set()

        return action

    schedule_a = [Schedule("a", 3600.0, act("a", stop_a))]
    first = threading.Thread(target=run, args=(redis_client, schedule_a, stop_a),
                             kwargs={"tick": 0.01})  # fmt: skip
    first.start()
    first.join()  # acted once, then stopped (and released the lock)
    schedule_b = [Schedule("b", 3600.0, act("b", done))]
    second = threading.Thread(target=run, args=(redis_client, schedule_b, stop_b),
                              kwargs={"tick": 0.01})  # fmt: skip
    second.start()
    assert done.wait(DEADLINE_SECONDS)
    stop_b.set()
    second.join()
    assert acted == ["a", "b"]


def test_a_long_action_keeps_the_lock(redis_client: redis.Redis) -> None:
    stop = threading.Event()
    other = LeaderLock(redis_client, "clock", 0.3)
    seen: list[bool] = []

    def long_action() -> None:
        deadline = time.monotonic() + 1.0  # over three lock lifetimes
        while time.monotonic() < deadline:
            seen.append(other.acquire())
            time.sleep(0.05)
        stop.set()

    run(redis_client, [Schedule("long", 3600.0, long_action)], stop, lock_ttl=0.3, tick=0.01)
    assert seen and not any(seen)


def test_the_clock_has_every_schedule_due_at_start(
    redis_client: redis.Redis, redis_url: str
) -> None:
    settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url})
    with GraphTokens(settings, redis_client) as auth:
        names = [s.name for s in Clockwork(settings, redis_client, auth).schedules()]
    assert {"reconcile", "lifecycle", "sweep", "polling", "directory"} <= set(names)


@pytest.mark.parametrize(
    ("argv", "instead"),
    [(["reconcile"], "presence-bridge clock reconcile"), (["status"], "presence-bridge status"),
     (["bogus"], "presence-bridge clock --help")],
)  # fmt: skip
def test_the_clock_process_points_a_command_to_the_cli(
    argv: list[str], instead: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clock_process.main(argv) == clock_process.EXIT_USAGE == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"use `{instead}" in line


def test_pbx_reconcile_queues_a_delivery_of_pending_state_per_tenant(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = write_env(
        tmp_path,
        tenant_toml(),
        PRESENCE_BRIDGE_REDIS_URL=redis_url,
        **{secret_env("contoso", "CLIENT_SECRET"): "s"},
    )
    settings = load_settings(env)
    with GraphTokens(settings, redis_client) as auth:
        Clockwork(settings, redis_client, auth).pbx_reconcile_all()
    [job] = queue(redis_client, QUEUE_PBX).jobs
    assert (job.func_name, list(job.args)) == ("workers.jobs.maintain_pbx", ["contoso"])


def test_schedule_intervals_come_from_the_settings(
    redis_client: redis.Redis, redis_url: str
) -> None:
    settings = load_settings(
        {"PRESENCE_BRIDGE_REDIS_URL": redis_url, "PRESENCE_BRIDGE_DIRECTORY_EVERY": "120"}
    )
    with GraphTokens(settings, redis_client) as auth:
        schedules = Clockwork(settings, redis_client, auth).schedules()
    every = {s.name: s.every_seconds for s in schedules}
    assert (every["directory"], every["sweep"], every["pbx-reconcile"]) == (120.0, 300.0, 60.0)


# A clock whose one long round writes a subscription record under its term, again and again.
STALLING_CLOCK = """
import logging, sys, threading, time
from redis import Redis
from core.state import subscriptions as sub_state
from core.state.subscriptions import SubscriptionRecord
from subscriptions.clock import Schedule, run

logging.basicConfig(stream=sys.stdout, level=logging.ERROR, format="%(message)s")
redis = Redis.from_url(sys.argv[1])
term = {}
record = SubscriptionRecord("sub-1", "contoso", b"digest", "stale@contoso.test")

def write():
    while True:
        sub_state.save(redis, record, term["fence"])
        time.sleep(0.02)

run(redis, [Schedule("write", 3600.0, write)], threading.Event(), lock_ttl=1.0, tick=0.05,
    lead=lambda fence: term.update(fence=fence))
"""


def test_a_stopped_leader_that_lost_its_lock_cannot_write_when_it_resumes(
    redis_client: redis.Redis, redis_url: str
) -> None:
    def held_by(account: str) -> bool:
        record = sub_state.read(redis_client, "sub-1")
        return record is not None and record.account == account

    stale = Service([sys.executable, "-c", STALLING_CLOCK, redis_url], private_env({}),
                    lambda: held_by("stale@contoso.test"), "the stalling clock")  # fmt: skip
    try:
        os.killpg(stale.proc.pid, signal.SIGSTOP)  # frozen mid-round, its lock keeper too
        lock = LeaderLock(redis_client, "clock", 30)
        wait_for(lock.acquire, "the stopped clock's lock to expire and be taken over")
        successor = SubscriptionRecord("sub-1", "contoso", b"digest", "successor@contoso.test")
        sub_state.save(redis_client, successor, lock.fence)
        os.killpg(stale.proc.pid, signal.SIGCONT)
        wait_for(lambda: "lost the leader lock mid-round" in stale.output(),
                 "the resumed clock to find its term over")  # fmt: skip
        assert held_by("successor@contoso.test")
    finally:
        stale.stop()
