"""The resync sweep and the polling of over-capacity users, against the emulator and real RQ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from core.graph import GraphBackingOff
from core.queue import JOB_PRESENCES, QUEUE_PRESENCE, queue
from core.state import backoff, presence
from core.state import subscriptions as sub_state
from subscriptions import polling, sweep
from tests.subscriptions.conftest import TENANT, Bridge


def enqueued(client: redis.Redis) -> list[dict[str, Any]]:
    jobs = queue(client, QUEUE_PRESENCE).get_jobs()
    assert all(job.func_name == JOB_PRESENCES and job.args[0] == TENANT for job in jobs)
    return [p for job in jobs for p in job.args[1]]


def run_sweep(bridge: Bridge) -> sweep.SweepReport:
    ctx = bridge.context()
    return sweep.sweep(bridge.redis, TENANT, ctx.graph(None), ctx.budget)


def test_a_sweep_reads_everyone_650_ids_a_call(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=1400, accounts=0)
    report = run_sweep(bridge)
    assert (report.read, report.calls) == (1400, 3)
    assert sorted(p["id"] for p in enqueued(bridge.redis)) == sorted(bridge.users)


def test_a_sweep_enqueues_only_presences_that_changed(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=10, accounts=0)
    bridge.control.request(
        "POST",
        "/presence",
        {"userIds": bridge.users[:3], "availability": "Busy", "activity": "InACall"},
    )
    # The pipeline already applied what everyone but users 0..2 shows now (Offline).
    presence.record(
        bridge.redis, TENANT, {u: presence.LastPresence("Offline", "Offline") for u in bridge.users}
    )
    report = run_sweep(bridge)
    changed = enqueued(bridge.redis)
    assert report.changed == 3
    assert sorted(p["id"] for p in changed) == sorted(bridge.users[:3])
    assert {(p["availability"], p["activity"]) for p in changed} == {("Busy", "InACall")}


def test_a_sweep_only_reads_linked_users(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=10, accounts=0)
    bridge.unlink(bridge.users[5:])
    assert run_sweep(bridge).read == 5


def test_polling_reads_only_the_polled_users(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=700, accounts=1)
    ctx = bridge.context()
    bridge.reconcile()
    report = polling.poll(bridge.redis, TENANT, ctx.graph(None), ctx.budget)
    polled = sub_state.polled_users(bridge.redis, TENANT)
    assert report.read == len(polled) == 50
    assert sorted(p["id"] for p in enqueued(bridge.redis)) == sorted(polled)


def test_the_call_budget_waits_for_the_window_to_slide() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    budget = sweep.CallBudget(calls=2, per=30.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        budget.take()
    assert waits == [30.0, 30.0]


@pytest.mark.parametrize(("users", "bound"), [(1, 15.0), (650, 15.0), (650 * 1000, 40.0)])
def test_polling_latency_bound(users: int, bound: float) -> None:
    assert polling.latency_bound(users) == bound


def test_the_poller_waits_one_latency_bound_between_rounds() -> None:
    now = [100.0]
    poller = polling.Poller(clock=lambda: now[0])
    assert poller.due(TENANT)
    poller.done(TENANT, 10)
    now[0] += polling.MIN_INTERVAL_SECONDS - 1
    assert not poller.due(TENANT)
    now[0] += 1
    assert poller.due(TENANT)


def test_a_sweep_makes_no_read_while_a_worker_is_held_back_by_graph(
    bridge_factory: Callable[..., Bridge],
) -> None:
    """The clock's reads share the app's back-off with the workers: a 429 one worker met holds
    the sweep too, which stays owed instead of spending reads Graph would refuse."""
    bridge = bridge_factory(users=10, accounts=0)
    spec = {"kind": "throttle", "path": "getPresencesByUserId$", "retryAfter": 120, "count": 1000}
    bridge.control.request("POST", "/faults/routes", spec)
    app = backoff.graph(bridge.redis, TENANT, bridge.settings.tenants[0].client_id)
    app.failed(429, 120.0, "429 TooManyRequests")  # what a worker's read recorded
    sub_state.request_sweep(bridge.redis, TENANT)

    with pytest.raises(GraphBackingOff):
        run_sweep(bridge)

    [fault] = bridge.control.request("GET", "/faults")["routes"]
    assert fault["remaining"] == 1000  # no read reached Graph
    assert sub_state.sweep_owed(bridge.redis, TENANT)
