"""Lifecycle items carry no id: dedup absorbs Graph's resends until the clock takes the item,
and never a later event of the same kind (a second `missed`, a repeated
`reauthorizationRequired`). Real app over loopback, real forwarder, the clock's own take."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from core.state import intake
from emulator.harness.served import ServedApp
from tests.webhook.conftest import TENANT, TENANT_ID
from workers.forwarder import IntakeForwarder


@dataclass
class Path:
    web: httpx.Client
    redis: redis.Redis
    forwarder: IntakeForwarder
    sid: str
    state: str

    def post(self, event: str) -> None:
        item = lifecycle_item(self.sid, self.state, event)
        assert self.web.post("/graph/lifecycle", json={"value": [item]}).status_code == 202
        self.forwarder.run_once(block_ms=10)

    def clock_takes(self) -> list[str]:
        """What the clock's drain acts on (`subscriptions.lifecycle.drain` takes the same)."""
        return [i["lifecycleEvent"] for i in intake.take_lifecycle(self.redis, TENANT, 100)]


def lifecycle_item(sid: str, state: str, event: str) -> dict[str, Any]:
    return {
        "subscriptionId": sid,
        "clientState": state,
        "lifecycleEvent": event,
        "subscriptionExpirationDateTime": "2026-11-22T10:00:00.0000000Z",
        "tenantId": TENANT_ID,
    }


@pytest.fixture
def path(
    serve_contoso: Callable[..., ServedApp],
    redis_client: redis.Redis,
    subscription: Callable[..., tuple[str, str]],
) -> Iterator[Path]:
    served = serve_contoso()
    forwarder = IntakeForwarder(redis_client, f"w-{uuid.uuid4().hex[:6]}")
    forwarder.ensure_group()
    with httpx.Client(base_url=served.url) as web:
        yield Path(web, redis_client, forwarder, *subscription())


@pytest.mark.parametrize("event", ["missed", "reauthorizationRequired"])
def test_the_same_event_after_the_clock_took_the_first_is_taken_in(path: Path, event: str) -> None:
    path.post(event)
    assert path.clock_takes() == [event]
    path.post(event)
    assert path.clock_takes() == [event]


def test_a_resend_before_the_clock_acts_is_absorbed(path: Path) -> None:
    path.post("missed")
    path.post("missed")
    assert path.clock_takes() == ["missed"]
    assert intake.counters(path.redis)["dropped:duplicate"] == 1


def test_a_lifecycle_dedup_key_lives_at_most_a_minute_while_no_clock_takes_it(
    path: Path,
) -> None:
    path.post("missed")
    [key] = path.redis.keys(intake.dedup_key("*"))
    assert 0 < int(path.redis.ttl(key)) <= 60
