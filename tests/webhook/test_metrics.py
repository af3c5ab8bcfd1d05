"""/metrics of the real app: counters, queue depths, latency and per-tenant gauges."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis
from cryptography.fernet import Fernet

from core.state import accounts, backoff, callstate, coordination, delivery, intake
from core.state import subscriptions as sub_state
from core.state.subscriptions import ReconcileStatus
from emulator.harness.served import ServedApp
from emulator.harness.tenants import CLIENT_ID, secret_env
from tests.webhook.conftest import presence_item


def test_metrics_show_received_accepted_and_dropped_by_reason(
    web: httpx.Client, subscription: Callable[..., tuple[str, str]]
) -> None:
    sid, state = subscription()
    web.post(
        "/graph/notifications",
        json={"value": [presence_item(sid, state), presence_item("nope", state)]},
    )
    text = web.get("/metrics").text
    assert "presence_bridge_notifications_received_total 2" in text
    assert "presence_bridge_notifications_accepted_total 1" in text
    assert 'presence_bridge_notifications_dropped_total{reason="unknown_subscription"} 1' in text


def test_metrics_show_queue_depth_and_enqueue_latency(
    web: httpx.Client, subscription: Callable[..., tuple[str, str]]
) -> None:
    sid, state = subscription()
    web.post("/graph/notifications", json={"value": [presence_item(sid, state)]})
    text = web.get("/metrics").text
    assert 'presence_bridge_queue_depth{queue="intake"} 1' in text
    assert "presence_bridge_enqueue_seconds_count 1.0" in text


def test_metrics_show_service_account_health_subscriptions_and_dead_letters(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    accounts.mark_needs_sign_in(redis_client, "contoso", "svc-1@contoso.com", "invalid_grant", 1.0)
    sub_state.register(redis_client, "sub-1", "contoso", "state-" + "z" * 40)
    sub_state.write_status(redis_client, "contoso", ReconcileStatus(polled=2), ["u1", "u2"])
    redis_client.hset(delivery.dead_key("contoso"), "alice", b"{}")  # an incomplete record
    served = serve_contoso(
        extra='service_accounts = ["svc-1@contoso.com", "svc-2@contoso.com"]',
        PRESENCE_BRIDGE_CACHE_KEY=Fernet.generate_key().decode(),
    )
    text = httpx.get(f"{served.url}/metrics").text
    for line in [
        'presence_bridge_service_accounts{tenant="contoso",status="needs_sign_in"} 1',
        'presence_bridge_service_accounts{tenant="contoso",status="not_signed_in"} 1',
        'presence_bridge_subscriptions{tenant="contoso"} 1',
        'presence_bridge_polled_users{tenant="contoso"} 2',
        'presence_bridge_dead_letters{tenant="contoso"} 1',
    ]:
        assert line in text


def test_metrics_show_call_state_listeners_counts_and_whether_one_is_up(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    connects = callstate.counter_field("contoso", "ami", "connects")
    intake.add_counters(redis_client, {connects: 3})
    callstate.save_status(
        redis_client, "contoso", "ami", callstate.SourceStatus("h-1", True, 2, 1.0), 30
    )
    callstate_toml = (
        '[tenants.pbx.callstate]\nsource = "ami"\n'
        'options = { host = "10.0.0.5", username = "bridge-calls" }\n'
    )
    served = serve_contoso(
        pbx=f'adapter = "builtin"\n{callstate_toml}',
        **{secret_env("contoso", "CALLSTATE_SECRET"): "c"},
    )
    text = httpx.get(f"{served.url}/metrics").text
    for line in [
        'presence_bridge_callstate_events_total{tenant="contoso",source="ami",event="connects"} 3',
        'presence_bridge_callstate_up{tenant="contoso",source="ami"} 1',
        'presence_bridge_callstate_active_calls{tenant="contoso",source="ami"} 2',
    ]:
        assert line in text
    redis_client.delete(callstate.status_key("contoso", "ami"))  # the listener died
    text = httpx.get(f"{served.url}/metrics").text
    assert 'presence_bridge_callstate_up{tenant="contoso",source="ami"} 0' in text


METRICS_TOKEN = "metrics-token-for-tests"  # noqa: S105 - a test value


def test_metrics_with_a_token_set_refuse_a_request_without_it(
    serve_contoso: Callable[..., ServedApp],
) -> None:
    served = serve_contoso(PRESENCE_BRIDGE_METRICS_TOKEN=METRICS_TOKEN)
    wrong = {"Authorization": "Bearer not-the-token"}
    statuses = [httpx.get(f"{served.url}/metrics", headers=h).status_code for h in ({}, wrong)]
    assert statuses == [401, 401]


def test_metrics_with_a_token_set_serve_the_bearer_of_it(
    serve_contoso: Callable[..., ServedApp],
) -> None:
    served = serve_contoso(PRESENCE_BRIDGE_METRICS_TOKEN=METRICS_TOKEN)
    response = httpx.get(
        f"{served.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200 and "presence_bridge_queue_depth" in response.text


def test_metrics_show_a_pbx_and_a_graph_app_backing_off(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    backoff.pbx(redis_client, "contoso").failed(503, 120.0, "PUT /users/alice: 503")
    graph = backoff.graph(redis_client, "contoso", CLIENT_ID)
    for _ in range(2):  # a probe that fails again
        graph.failed(429, 0.0, "429 TooManyRequests")
        redis_client.hset(backoff.record_key("contoso", graph.peer), "until", "0")
    served = serve_contoso()
    text = httpx.get(f"{served.url}/metrics").text
    pbx_left = 'presence_bridge_backoff_seconds{tenant="contoso",peer="pbx"} '
    [left] = [line.removeprefix(pbx_left) for line in text.splitlines() if pbx_left in line]
    assert 100 < float(left) <= 120
    for line in [
        'presence_bridge_backoff_seconds{tenant="contoso",peer="graph"} 0.0',
        'presence_bridge_backoff_failures{tenant="contoso",peer="pbx"} 1',
        'presence_bridge_backoff_failures{tenant="contoso",peer="graph"} 2',
    ]:
        assert line in text


def test_metrics_show_which_processes_are_up_and_their_problems(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    now = time.time()
    coordination.beat(redis_client, coordination.Process.WORKER, now, 30)
    coordination.report_problems(
        redis_client, coordination.Process.WORKER, "w1", ["intake: WRONGTYPE"], now, 30
    )
    text = web.get("/metrics").text
    for line in [
        'presence_bridge_process_up{process="worker"} 1',
        'presence_bridge_process_up{process="clock"} 0',
        'presence_bridge_process_problems{process="worker"} 1',
        'presence_bridge_process_problems{process="clock"} 0',
    ]:
        assert line in text.splitlines()
