"""Redis comes back empty under a running bridge: the clock repairs it, in order, by itself.

Real processes: the worker (`python -m workers`) and the clock (`python -m subscriptions`),
the web app under uvicorn, the Graph emulator, a real Redis that is flushed mid-run.
"""

from __future__ import annotations

import pytest

from core.state import coordination, intake
from core.state import subscriptions as sub_state
from core.state.coordination import Repair
from core.status import system
from emulator.harness.processes import Service
from tests.e2e.conftest import TENANT, Bridge, BridgeFactory, wait_for

# The repair queues a directory job and waits for a worker: more than the default wait.
REPAIR_SECONDS = 60.0


@pytest.fixture
def clocked(bridge_factory: BridgeFactory) -> Bridge:
    """The bridge with its clock running, which holds the account's subscription."""
    bridge = bridge_factory()
    assert bridge.site is not None
    clock: Service = bridge.site.start_clock()
    bridge.services.append(clock)
    wait_for(lambda: sub_state.load(bridge.redis, TENANT), "the clock's subscription", 60)
    return bridge


def repaired(bridge: Bridge) -> Repair:
    def done() -> Repair | None:
        repair = coordination.read_repair(bridge.redis, TENANT)
        return repair if repair is not None and repair.done else None

    return wait_for(done, "the clock's repair", REPAIR_SECONDS)


def notified(bridge: Bridge, user: str) -> bool:
    """Whether a change notification of `user` went through the webhook, forwarder and worker."""
    entries: list[tuple[bytes, dict[bytes, bytes]]]
    entries = bridge.redis.xrange(intake.notification_log(TENANT))  # type: ignore[assignment]
    graph_id = bridge.users[user].encode()
    return any(
        fields.get(b"kind") == b"notification" and fields.get(b"userId") == graph_id
        for _, fields in entries
    )


def test_after_an_empty_redis_the_repair_runs_in_order_and_presence_flows_without_a_person(
    clocked: Bridge,
) -> None:
    clocked.redis.flushdb()

    repair = repaired(clocked)
    assert [stage for stage, _ in repair.finished] == [
        "directory",
        "links",
        "subscriptions",
        "sweep",
    ]
    assert repair.linked == repair.swept == len(clocked.users)  # the sweep saw the links
    clocked.set_teams("bob", "Away", "Away")
    clocked.wait_applied("bob", "Away", "bob's change, polled while no account is signed in")


def test_after_an_empty_redis_the_account_is_listed_and_real_time_returns_once_signed_in(
    clocked: Bridge,
) -> None:
    assert clocked.site is not None
    clocked.redis.flushdb()
    repaired(clocked)
    (account,) = clocked.site.accounts
    problems = system.bridge_status(clocked.redis, clocked.settings).problems
    assert [(p.subject, p.message.split(":")[0]) for p in problems if p.source == "account"] == [
        (account, "needs sign-in")
    ]

    clocked.site.sign_in(clocked.auth, account)
    wait_for(lambda: sub_state.load(clocked.redis, TENANT), "a subscription after the sign-in")
    clocked.set_teams("carol", "DoNotDisturb", "Presenting")

    wait_for(lambda: notified(clocked, "carol"), "carol's change notification")
    clocked.wait_applied("carol", "Do Not Disturb")
