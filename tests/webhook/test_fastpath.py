"""The web process serves `FastPath(create_app(...))`: Graph's POSTs skip Starlette's stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from core.settings import load_settings
from emulator.harness.served import ServedApp
from tests.webhook.conftest import presence_item, stream_items
from webhook.app import create_app
from webhook.fastpath import FastPath


@pytest.fixture
def fast(redis_client: redis.Redis, redis_url: str) -> Iterator[httpx.Client]:
    app = FastPath(create_app(load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url})))
    with ServedApp(app) as served, httpx.Client(base_url=served.url) as client:
        yield client


def test_notifications_are_accepted_on_the_fast_path(
    fast: httpx.Client, subscription: Callable[..., tuple[str, str]], redis_client: redis.Redis
) -> None:
    sid, state = subscription()
    response = fast.post("/graph/notifications", json={"value": [presence_item(sid, state)]})
    assert (response.status_code, len(stream_items(redis_client))) == (202, 1)


def test_the_handshake_works_on_the_fast_path(fast: httpx.Client) -> None:
    response = fast.post("/graph/lifecycle?validationToken=a%20b")
    assert (response.status_code, response.text) == (200, "a b")


def test_other_methods_still_get_405(fast: httpx.Client) -> None:
    assert fast.get("/graph/notifications").status_code == 405


def test_other_routes_go_through_the_app(fast: httpx.Client) -> None:
    assert fast.get("/healthz").json()["status"] == "ok"
