"""/healthz, /readyz and /health/system of the real app."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import redis

from core.settings import load_settings
from core.state import coordination, intake
from emulator.harness.ports import free_port
from emulator.harness.redis_server import RedisServer
from emulator.harness.served import ServedApp
from webhook.app import create_app

WORKER, CLOCK = coordination.Process.WORKER, coordination.Process.CLOCK
METRICS_TOKEN = "metrics-token-for-health-tests"  # noqa: S105 - a test value


def beat_all(client: redis.Redis) -> None:
    for process in coordination.Process:
        coordination.beat(client, process, time.time(), 30)


def test_healthz_answers(web: httpx.Client) -> None:
    assert web.get("/healthz").json()["status"] == "ok"


def test_readyz_is_200_without_a_worker(web: httpx.Client) -> None:
    # Graph traffic is queued in Redis while workers are down: the web process stays ready.
    response = web.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "redis": True})


def test_readyz_is_200_while_a_worker_reports_problems(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    coordination.beat(redis_client, WORKER, time.time(), 30)
    coordination.report_problems(redis_client, WORKER, "w1", ["intake: WRONGTYPE"], time.time(), 30)
    assert web.get("/readyz").status_code == 200


def test_readyz_writes_to_redis(web: httpx.Client, redis_client: redis.Redis) -> None:
    web.get("/readyz")
    assert redis_client.ttl(coordination.READY_PROBE_KEY) > 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        # a replica of a primary that is gone: read-only
        (("--replicaof", "127.0.0.1", str(free_port())), "READONLY"),
        # full, and told not to evict
        (("--maxmemory", "1", "--maxmemory-policy", "noeviction"), "OOM"),
        # a primary that wants a replica to acknowledge and has none
        (("--min-replicas-to-write", "1"), "NOREPLICAS"),
    ],
)
def test_readyz_is_503_when_redis_answers_but_refuses_writes(
    args: tuple[str, ...], reason: str
) -> None:
    with RedisServer(args=args) as server:
        assert server.client.ping()  # PING alone would call it ready
        settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": server.url()})
        with ServedApp(create_app(settings)) as served:
            response = httpx.get(f"{served.url}/readyz")
    assert (response.status_code, response.json()) == (
        503,
        {"status": "unready", "redis": False, "reason": reason},
    )


def test_readyz_and_system_are_503_without_redis() -> None:
    with RedisServer() as server:
        settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": server.url()})
        with ServedApp(create_app(settings)) as served:
            server.stop()
            ready = httpx.get(f"{served.url}/readyz")
            system = httpx.get(f"{served.url}/health/system")
    assert (ready.status_code, ready.json()["redis"]) == (503, False)
    assert (system.status_code, system.json()["redis"]) == (503, False)


def test_system_is_503_without_a_worker(web: httpx.Client, redis_client: redis.Redis) -> None:
    coordination.beat(redis_client, CLOCK, time.time(), 30)
    response = web.get("/health/system")
    assert (response.status_code, response.json()["worker"]["alive"]) == (503, False)


def test_system_is_503_without_a_clock(web: httpx.Client, redis_client: redis.Redis) -> None:
    coordination.beat(redis_client, WORKER, time.time(), 30)
    response = web.get("/health/system")
    assert (response.status_code, response.json()["clock"]["alive"]) == (503, False)


def test_system_is_200_with_a_recent_worker_and_clock(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    beat_all(redis_client)
    response = web.get("/health/system")
    assert (response.status_code, response.json()["status"]) == (200, "healthy")


def test_system_is_503_with_the_reason_a_worker_reports(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    beat_all(redis_client)
    coordination.report_problems(redis_client, WORKER, "w1", ["intake: WRONGTYPE"], time.time(), 30)
    response = web.get("/health/system")
    assert (response.status_code, response.json()["worker"]) == (
        503,
        {"alive": True, "problems": ["w1: intake: WRONGTYPE"]},
    )


def test_system_reports_the_intake_backlog(web: httpx.Client, redis_client: redis.Redis) -> None:
    beat_all(redis_client)
    intake.ensure_group(redis_client)
    for n in range(3):
        redis_client.xadd(intake.STREAM, {"n": str(n)})
    intake.read_new(redis_client, "w1", count=1)
    response = web.get("/health/system")
    assert response.json()["intake"] == {"length": 3, "pending": 1}


def test_system_wants_the_metrics_token_when_one_is_set(
    serve_contoso: Callable[..., ServedApp],
) -> None:
    served = serve_contoso(PRESENCE_BRIDGE_METRICS_TOKEN=METRICS_TOKEN)
    assert httpx.get(f"{served.url}/health/system").status_code == 401


def test_system_answers_with_the_metrics_token(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    beat_all(redis_client)
    served = serve_contoso(PRESENCE_BRIDGE_METRICS_TOKEN=METRICS_TOKEN)
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert httpx.get(f"{served.url}/health/system", headers=headers).status_code == 200
