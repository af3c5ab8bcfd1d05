"""The repair after Redis came back empty: directory, links, subscriptions, sweep, in order.

The worker's part (the directory job) is played here by running the directory sync the job
runs; the whole bridge with its real processes is in tests/e2e/test_empty_redis.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.queue import JOB_SYNC_DIRECTORY, QUEUE_GRAPH, QUEUE_PRESENCE, queue
from core.settings import PbxUser, Settings
from core.state import coordination, intake, links
from core.state import subscriptions as sub_state
from core.state.coordination import RepairStage
from core.status import system
from subscriptions.repair import DIRECTORY_RETRY_SECONDS
from subscriptions.schedules import Clockwork
from tests.subscriptions.conftest import TENANT, Bridge
from workers.directory_sync import sync_directory

USERS = 20


@pytest.fixture
def bridge(bridge_factory: Callable[..., Bridge]) -> Bridge:
    """A subscribed tenant whose links come from the tenants file (static links)."""
    made = bridge_factory(users=USERS, accounts=1)
    pbx_users = [PbxUser(username=f"pbx-{n}", graph_id=uid) for n, uid in enumerate(made.users)]
    tenant = made.tenant.model_copy(update={"pbx_users": pbx_users})
    made.replace_settings(Settings(process=made.settings.process, tenants=(tenant,)))
    return made


def emptied(bridge: Bridge, work: Clockwork) -> None:
    """A working tenant (subscribed, epoch set), then Redis comes back empty."""
    coordination.mark_epoch(bridge.redis, 0.0)
    work.reconcile_all()
    assert len(bridge.live()) == 1
    bridge.redis.flushdb()


def run_directory_job(bridge: Bridge) -> None:
    """What the worker does with the queued job (`workers.jobs.sync_directory`)."""
    [job] = queue(bridge.redis, QUEUE_GRAPH).jobs
    assert (job.func_name, job.args, job.kwargs) == (JOB_SYNC_DIRECTORY, [TENANT, True], {})
    with bridge.auth.tenant(TENANT).graph_client() as graph:
        sync_directory(bridge.tenant, bridge.redis, graph, full=True)
    job.delete()


def swept_users(bridge: Bridge) -> list[str]:
    jobs = queue(bridge.redis, QUEUE_PRESENCE).jobs
    return sorted(p["id"] for job in jobs for p in job.args[1])


def test_the_repair_waits_for_the_directory_before_subscriptions_and_sweep(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)

    for _ in range(2):  # however often it ticks, nothing runs on the missing links
        work.repair_all()
        work.sweep_all()
        work.reconcile_all()

    repair = coordination.read_repair(bridge.redis, TENANT)
    assert repair is not None and repair.stage is RepairStage.DIRECTORY
    assert swept_users(bridge) == []
    assert sub_state.read_status(bridge.redis, TENANT) is None  # no reconcile on no links


def test_the_repair_runs_directory_links_subscriptions_sweep_in_that_order(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)
    work.repair_all()
    run_directory_job(bridge)
    work.repair_all()

    repair = coordination.read_repair(bridge.redis, TENANT)
    assert repair is not None and repair.done
    assert [stage for stage, _ in repair.finished] == [
        "directory",
        "links",
        "subscriptions",
        "sweep",
    ]
    assert repair.linked == repair.swept == USERS
    assert swept_users(bridge) == sorted(bridge.users)
    # No account has tokens yet: every linked user is polled meanwhile (app-only, no person).
    assert sorted(sub_state.polled_users(bridge.redis, TENANT)) == sorted(bridge.users)


def test_accounts_whose_tokens_were_lost_are_listed_as_needing_sign_in(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)
    work.repair_all()

    problems = system.tenant_status(bridge.redis, bridge.tenant).problems
    (account,) = bridge.accounts
    [problem] = [p for p in problems if p.source == "account"]
    assert problem.subject == account
    assert problem.message.startswith("needs sign-in")
    assert any(p.source == "repair" for p in problems)  # in progress, shown too


def test_an_account_signed_in_again_is_subscribed_at_the_next_renewals_tick(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)
    work.repair_all()
    run_directory_job(bridge)
    work.repair_all()
    work.renewals_all()  # nobody signed in yet: nothing to do
    (account,) = bridge.accounts

    bridge.sign_in(account)
    work.renewals_all()

    held = sub_state.load(bridge.redis, TENANT)
    assert set(held) == {account}
    (live,) = bridge.live()
    assert live.id == held[account].subscription_id
    assert sorted(live.user_ids) == sorted(links.linked_graph_ids(bridge.redis, TENANT))
    assert sub_state.polled_users(bridge.redis, TENANT) == []
    assert not [p for p in system.tenant_status(bridge.redis, bridge.tenant).problems
                if p.source == "account"]  # fmt: skip


def test_the_intake_group_is_back_for_the_forwarder(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    intake.ensure_group(bridge.redis)
    emptied(bridge, work)

    work.repair_all()

    assert intake.read_new(bridge.redis, "forwarder-1", 10) == []  # no NOGROUP


def test_the_directory_job_is_queued_again_when_it_left_no_status(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)
    work.repair_all()
    queue(bridge.redis, QUEUE_GRAPH).empty()  # type: ignore[no-untyped-call] # failed, or lost

    bridge.control.advance_clock(DIRECTORY_RETRY_SECONDS + 1)
    work.repair_all()
    run_directory_job(bridge)
    work.repair_all()

    repair = coordination.read_repair(bridge.redis, TENANT)
    assert repair is not None and repair.done


def test_a_sweep_graph_refuses_finishes_the_repair_and_stays_owed(
    bridge: Bridge, clockwork_factory: Callable[[Bridge], Clockwork]
) -> None:
    work = clockwork_factory(bridge)
    emptied(bridge, work)
    work.repair_all()
    run_directory_job(bridge)
    # Longer than the Graph client waits in-process: the sweep fails at once.
    throttle = {"kind": "throttle", "path": "getPresencesByUserId", "retryAfter": 120, "count": 1}
    bridge.control.request("POST", "/faults/routes", throttle)

    work.repair_all()

    repair = coordination.read_repair(bridge.redis, TENANT)
    assert repair is not None and repair.done and repair.swept is None
    assert sub_state.sweep_owed(bridge.redis, TENANT)
