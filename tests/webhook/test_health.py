"""/healthz and /readyz of the real app."""

from __future__ import annotations

import time

import httpx
import redis

from core.state import coordination


def test_healthz_answers(web: httpx.Client) -> None:
    assert web.get("/healthz").json()["status"] == "ok"


def test_readyz_is_503_without_a_worker_heartbeat(web: httpx.Client) -> None:
    response = web.get("/readyz")
    assert (response.status_code, response.json()["worker"]) == (503, False)


def test_readyz_is_200_with_redis_and_a_recent_worker(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    coordination.beat(redis_client, coordination.Process.WORKER, 1.0, 30)
    assert web.get("/readyz").status_code == 200


def test_readyz_is_503_with_the_reason_a_worker_reports(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    worker = coordination.Process.WORKER
    coordination.beat(redis_client, worker, time.time(), 30)
    coordination.report_problems(redis_client, worker, "w1", ["intake: WRONGTYPE"], time.time(), 30)
    response = web.get("/readyz")
    assert (response.status_code, response.json()["problems"]) == (503, ["w1: intake: WRONGTYPE"])
