from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from core import keys
from tests.webhook.conftest import presence_item


def test_healthz_answers(web: httpx.Client) -> None:
    assert web.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_503_without_a_worker_heartbeat(web: httpx.Client) -> None:
    response = web.get("/readyz")
    assert (response.status_code, response.json()["worker"]) == (503, False)


def test_readyz_is_200_with_redis_and_a_recent_worker(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    redis_client.set(keys.WORKER_HEARTBEAT, "1", ex=30)
    assert web.get("/readyz").status_code == 200


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
