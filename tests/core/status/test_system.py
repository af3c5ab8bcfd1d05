"""core.status.system against a real Redis, with the records written by their owners' own code."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import redis
from rq import SimpleWorker

from core.queue import QUEUE_DEFAULT, JobSpec, queue
from core.settings import ProcessSettings, Settings
from core.state import accounts, backoff, coordination, delivery, directory
from core.state import subscriptions as sub_state
from core.state.backoff import Backoff
from core.state.coordination import Process
from core.state.subscriptions import ReconcileStatus, SubscriptionRecord
from core.status import system as status
from tests.core.status.conftest import NOW, TENANT, tenant_settings
from workers.pbx.base import ProfileChange


def explode(tenant: str) -> None:
    """An RQ job that fails (run by the failed-jobs test)."""
    raise RuntimeError(f"the PBX of {tenant} is on fire")


def sub_record(sid: str, account: str, expires_in: float, users: int = 3) -> SubscriptionRecord:
    return SubscriptionRecord(sid, TENANT, sub_state.client_state_digest("client-state"), account,
                              tuple(f"u{i}" for i in range(users)), NOW + expires_in, NOW - 600,
                              NOW - 60)  # fmt: skip


@pytest.mark.parametrize(
    ("expires_in", "state"),
    [(3000.0, "live"), (300.0, "expiring"), (-5.0, "expired")],
)
def test_subscription_state_follows_time_left(
    redis_client: redis.Redis, expires_in: float, state: str
) -> None:
    sub_state.save(redis_client, sub_record("s1", "svc@contoso.test", expires_in))

    [view] = status.subscriptions(redis_client, TENANT, NOW)

    assert (view.subscription_id, view.account, view.users) == ("s1", "svc@contoso.test", 3)
    assert (view.state, view.seconds_left) == (state, expires_in)


def test_subscriptions_are_listed_soonest_expiry_first(redis_client: redis.Redis) -> None:
    sub_state.save(redis_client, sub_record("late", "a@x", 3000))
    sub_state.save(redis_client, sub_record("soon", "b@x", 1200))

    assert [s.subscription_id for s in status.subscriptions(redis_client, TENANT, NOW)] == [
        "soon", "late"
    ]  # fmt: skip


def test_accounts_show_health_token_and_subscription(redis_client: redis.Redis) -> None:
    tenant = tenant_settings(service_accounts=["Ann@x", "bob@x", "cy@x"])
    accounts.mark_signed_in(redis_client, TENANT, "ann@x", NOW)
    accounts.write_token_cache(redis_client, TENANT, "ann@x", b"sealed")
    accounts.mark_needs_sign_in(redis_client, TENANT, "bob@x", "invalid_grant: revoked", NOW)
    subs = [status.SubscriptionView("s1", "ann@x", 3, NOW + 3000, NOW, 3000, "live")]

    views = {v.account: v for v in status.account_views(redis_client, tenant, subs)}

    assert (views["ann@x"].status, views["ann@x"].token_cached) == ("healthy", True)
    assert views["ann@x"].subscription_id == "s1"
    assert views["ann@x"].refresh_token_expires_at == NOW + 90 * 86400
    assert (views["bob@x"].status, views["bob@x"].reason) == (
        "needs_sign_in", "invalid_grant: revoked"
    )  # fmt: skip
    assert (views["cy@x"].status, views["cy@x"].token_cached) == ("not_signed_in", False)


def test_users_view_combines_directory_and_subscription_status(redis_client: redis.Redis) -> None:
    # A partial record, as an older version may have left it: the codec fills in the rest.
    redis_client.set(directory.status_key(TENANT), orjson.dumps({
        "synced_at": NOW, "graph_users": 10, "pbx_users": 6, "linked_pbx": 4,
        "unlinked_graph": 5, "unlinked_pbx": 1, "conflict_count": 1, "disabled": 1,
        "conflicts": [{"pbx_user": "x", "graph_ids": ["g1", "g2"]}],
    }))  # fmt: skip
    sub_state.write_status(redis_client, TENANT,
                           ReconcileStatus(subscribed=3, polled=1, polling_latency_bound=15.0),
                           ["g9"])  # fmt: skip

    view = status.users_view(redis_client, TENANT)

    assert (view.linked, view.unlinked_pbx, view.unlinked_graph, view.conflicting) == (4, 1, 5, 1)
    assert (view.subscribed, view.polled, view.polling_latency_bound) == (3, 1, 15.0)
    assert view.conflicts == [{"pbx_user": "x", "graph_ids": ["g1", "g2"]}]


def test_users_view_of_a_tenant_never_synced_is_empty(redis_client: redis.Redis) -> None:
    view = status.users_view(redis_client, TENANT)

    assert (view.directory_synced_at, view.linked, view.polled) == (None, 0, 0)


def test_pending_deliveries_agree_with_the_delivery_side(redis_client: redis.Redis) -> None:
    made = delivery.set_desired(redis_client, TENANT, [
        ProfileChange("ann", "Away"), ProfileChange("bob", "Busy"), ProfileChange("cy", "DND"),
    ])  # fmt: skip
    delivery.mark_applied(redis_client, TENANT, [made[0]], {})
    delivery.dead_letter(redis_client, TENANT, made[1], "refused")

    assert status.pending_deliveries(redis_client, TENANT) == len(
        delivery.pending_users(redis_client, TENANT)
    ) == 1  # fmt: skip


def test_dead_letters_and_problems_name_the_reason(redis_client: redis.Redis) -> None:
    [made] = delivery.set_desired(redis_client, TENANT, [ProfileChange("ann", "Away")])
    delivery.dead_letter(redis_client, TENANT, made, "HTTP 404: no such extension")

    report = status.tenant_status(redis_client, tenant_settings(), NOW)

    [letter] = report.dead_letters
    assert (letter.user, letter.profile, letter.version) == ("ann", "Away", 1)
    assert ("delivery", "ann") in {(p.source, p.subject) for p in report.problems}
    assert any("no such extension" in p.message for p in report.problems)


def test_a_healthy_account_without_stored_tokens_needs_sign_in(redis_client: redis.Redis) -> None:
    accounts.mark_signed_in(redis_client, TENANT, "ann@x", NOW)  # its token cache is gone

    report = status.tenant_status(redis_client, tenant_settings(service_accounts=["ann@x"]), NOW)

    [problem] = report.problems
    assert (problem.source, problem.subject) == ("account", "ann@x")
    assert problem.message == "needs sign-in: no tokens stored"


def test_an_account_whose_tokens_the_repair_found_gone_needs_sign_in(
    redis_client: redis.Redis,
) -> None:
    repair = coordination.Repair(since=NOW, needs_sign_in=("ann@x",))
    coordination.write_repair(redis_client, TENANT, repair)

    report = status.tenant_status(redis_client, tenant_settings(service_accounts=["ann@x"]), NOW)

    [problem] = [p for p in report.problems if p.source == "account"]
    assert problem.message == "needs sign-in: its tokens were lost when Redis came back empty"
    assert problem.at == NOW


def test_a_throttled_account_says_so(redis_client: redis.Redis) -> None:
    sub_state.record_backoff(redis_client, TENANT, "svc@x", NOW + 60, "Graph 429", throttled=True)

    [problem] = status.tenant_status(redis_client, tenant_settings(), NOW).problems

    assert problem.message == f"throttled by Graph until {NOW + 60:.0f}: Graph 429"


def test_backoff_of_an_account_is_a_problem(redis_client: redis.Redis) -> None:
    sub_state.record_backoff(redis_client, TENANT, "svc@x", NOW + 60, "Graph 503")

    report = status.tenant_status(redis_client, tenant_settings(), NOW)

    [problem] = report.problems
    assert (problem.source, problem.subject) == ("subscription", "svc@x")
    assert "Graph 503" in problem.message


def test_a_pbx_backing_off_is_a_problem_that_says_until_when_and_why(
    redis_client: redis.Redis,
) -> None:
    shared = Backoff(redis_client, TENANT, backoff.PBX, clock=lambda: NOW)
    shared.failed(503, 120.0, "PUT /users/ann: PBX answered 503")

    report = status.tenant_status(redis_client, tenant_settings(), NOW)

    [problem] = report.problems
    assert (problem.source, problem.subject, problem.at) == ("backoff", "PBX", NOW)
    until = dt.datetime.fromtimestamp(NOW + 120, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert problem.message.startswith(f"backing off until {until} (503) after 1 failure(s)")


def test_failed_jobs_show_their_tenant_and_last_error_line(redis_client: redis.Redis) -> None:
    q = queue(redis_client, QUEUE_DEFAULT)
    explode_job = JobSpec("explode", "tests.core.status.test_system.explode", QUEUE_DEFAULT)
    explode_job.enqueue(redis_client, TENANT)
    SimpleWorker([q], connection=redis_client, serializer=q.serializer).work(burst=True)

    [problem] = status.failed_jobs(redis_client)

    assert (problem.tenant, problem.source) == (TENANT, "job")
    assert problem.message == f"RuntimeError: the PBX of {TENANT} is on fire"
    assert [v.failed for v in status.queue_views(redis_client) if v.name == QUEUE_DEFAULT] == [1]


def test_bridge_status_sees_heartbeats_and_tenants(redis_client: redis.Redis) -> None:
    coordination.beat(redis_client, Process.WORKER, NOW, 30)
    settings = Settings(process=ProcessSettings(), tenants=(tenant_settings(),))

    report = status.bridge_status(redis_client, settings, now=NOW)

    assert (report.worker_alive, report.clock_alive) == (True, False)
    assert [t.name for t in report.tenants] == [TENANT]
    assert orjson.loads(orjson.dumps(status.as_json(report)))["tenants"][0]["name"] == TENANT
