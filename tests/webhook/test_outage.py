from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from core.settings import load_settings
from core.state import subscriptions as sub_state
from emulator.harness.redis_server import RedisServer
from emulator.harness.served import ServedApp
from tests.webhook.conftest import presence_item
from webhook.app import create_app


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def test_redis_down_is_a_503_and_redis_back_is_a_202(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url())
    sub_state.register(client, "sub-1", "contoso", "state-" + "x" * 40)
    settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": own_redis.url()})
    body = {"value": [presence_item("sub-1", "state-" + "x" * 40, id="n1")]}
    with ServedApp(create_app(settings)) as served, httpx.Client(base_url=served.url) as web:
        own_redis.stop()
        down = web.post("/graph/notifications", json=body)
        own_redis.start()  # empty again: the subscription must be known anew
        sub_state.register(client, "sub-1", "contoso", "state-" + "x" * 40)
        back = web.post("/graph/notifications", json=body)
    assert (down.status_code, back.status_code) == (503, 202)
    assert client.xlen("pb:intake") == 1


def test_a_redis_that_stops_answering_is_a_503_then_a_202(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url())
    sub_state.register(client, "sub-2", "contoso", "state-" + "y" * 40)
    settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": own_redis.url()})
    first = {"value": [presence_item("sub-2", "state-" + "y" * 40, id="n1")]}
    second = {"value": [presence_item("sub-2", "state-" + "y" * 40, id="n2")]}
    with (
        ServedApp(create_app(settings)) as served,
        httpx.Client(base_url=served.url, timeout=10) as web,
    ):
        assert web.post("/graph/notifications", json=first).status_code == 202  # warm cache
        client.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "PAUSE", 5000, "ALL"
        )  # connected, but silent
        hung = web.post("/graph/notifications", json=second)
        client.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        back = web.post("/graph/notifications", json=second)
    assert (hung.status_code, back.status_code) == (503, 202)
