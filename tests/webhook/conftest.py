"""Fixtures for the web process: the real app under uvicorn against the test Redis."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis

from core.settings import load_settings
from core.state import intake
from core.state import subscriptions as sub_state
from emulator.harness.redis_server import StreamEntries
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from webhook.app import create_app

TENANT = "contoso"
TENANT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def web(redis_client: redis.Redis, redis_url: str) -> Iterator[httpx.Client]:
    settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url})
    with ServedApp(create_app(settings)) as served, httpx.Client(base_url=served.url) as client:
        yield client


@pytest.fixture
def serve_contoso(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., ServedApp]]:
    """Serve the app for one tenant `contoso`: `serve(extra=TOML, pbx=TOML, **ENV)`."""
    with contextlib.ExitStack() as stack:

        def serve(extra: str = "", pbx: str = 'adapter = "builtin"', **env: str) -> ServedApp:
            secret = {secret_env(TENANT, "CLIENT_SECRET"): "s"}
            settings = load_settings(
                write_env(
                    tmp_path,
                    tenant_toml(TENANT, extra=extra, pbx=pbx),
                    PRESENCE_BRIDGE_REDIS_URL=redis_url,
                    **secret | env,
                )
            )
            return stack.enter_context(ServedApp(create_app(settings)))

        yield serve


@pytest.fixture
def subscription(redis_client: redis.Redis) -> Callable[..., tuple[str, str]]:
    """Register a subscription as the clock would; returns (id, clientState)."""

    def make(tenant: str = TENANT) -> tuple[str, str]:
        sid, state = str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex
        sub_state.register(redis_client, sid, tenant, state)
        return sid, state

    return make


def presence_item(sid: str, state: str, user_id: str | None = None, **extra: Any) -> dict[str, Any]:
    user_id = user_id or str(uuid.uuid4())
    item: dict[str, Any] = {
        "subscriptionId": sid,
        "clientState": state,
        "changeType": "updated",
        "resource": f"communications/presences/{user_id}",
        "subscriptionExpirationDateTime": "2026-11-22T10:00:00.0000000Z",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.presence",
            "@odata.id": f"users/{user_id}/presence",
            "id": user_id,
        },
        "tenantId": TENANT_ID,
    }
    item.update(extra)
    return item


def stream_items(client: redis.Redis) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _, fields in cast(StreamEntries, client.xrange(intake.STREAM)):
        out.extend(orjson.loads(fields[b"items"]))
    return out
