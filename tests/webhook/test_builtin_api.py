from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import httpx
import pytest
import redis

from core.state.pbx import builtin_events_key
from emulator.harness.redis_server import StreamEntries
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env
from workers.pbx.base import ProfileChange
from workers.pbx.builtin import BuiltinAdapter

KEY = "pbx-api-key-" + "k" * 32


@pytest.fixture
def api(serve_contoso: Callable[..., ServedApp]) -> Iterator[httpx.Client]:
    served = serve_contoso(**{secret_env("contoso", "PBX_SECRET"): KEY})
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
        yield client


def test_profile_of_a_user(api: httpx.Client, redis_client: redis.Redis) -> None:
    BuiltinAdapter(redis_client, "contoso").apply_profile(
        ProfileChange("alice", "Teams Meeting", "Busy", "InAMeeting", 3)
    )
    body = api.get("/api/v1/tenants/contoso/users/alice/profile").json()
    assert (body["profile"], body["version"]) == ("Teams Meeting", 3)


def test_unknown_user_is_a_404(api: httpx.Client) -> None:
    assert api.get("/api/v1/tenants/contoso/users/nobody/profile").status_code == 404


def test_list_of_profiles(api: httpx.Client, redis_client: redis.Redis) -> None:
    adapter = BuiltinAdapter(redis_client, "contoso")
    adapter.apply_profile(ProfileChange("bob", "Away"))
    adapter.apply_profile(ProfileChange("alice", "Available"))
    users = api.get("/api/v1/tenants/contoso/users").json()["value"]
    assert [(u["user"], u["profile"]) for u in users] == [("alice", "Available"), ("bob", "Away")]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "x"}],
    ids=["none", "wrong-bearer", "wrong-header"],
)
def test_api_refuses_without_the_key(api: httpx.Client, headers: dict[str, str]) -> None:
    response = httpx.get(f"{api.base_url}/api/v1/tenants/contoso/users", headers=headers)
    assert response.status_code == 401


def test_api_key_header_works_too(api: httpx.Client) -> None:
    response = httpx.get(f"{api.base_url}/api/v1/tenants/contoso/users", headers={"X-API-Key": KEY})
    assert response.status_code == 200


def test_unknown_tenant_is_refused(api: httpx.Client) -> None:
    assert api.get("/api/v1/tenants/other/users").status_code == 401


def test_event_stream_delivers_profile_changes(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    with api.stream("GET", "/api/v1/tenants/contoso/events") as response:
        lines = (line for line in response.iter_lines() if line)
        assert next(lines) == ": connected"
        BuiltinAdapter(redis_client, "contoso").apply_profile(ProfileChange("alice", "Away"))
        event = [next(lines) for _ in range(3)]
    assert event[0].startswith("id: ") and event[1] == "event: profile"
    assert '"profile":"Away"' in event[2]


def test_event_stream_resumes_after_last_event_id(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    adapter = BuiltinAdapter(redis_client, "contoso")
    adapter.apply_profile(ProfileChange("alice", "Away"))
    [(first_id, _)] = cast(StreamEntries, redis_client.xrange(builtin_events_key("contoso")))
    adapter.apply_profile(ProfileChange("alice", "Busy"))
    with api.stream(
        "GET", "/api/v1/tenants/contoso/events", headers={"Last-Event-ID": first_id.decode()}
    ) as response:
        lines = (line for line in response.iter_lines() if line)
        next(lines)
        event = [next(lines) for _ in range(3)]
    assert '"profile":"Busy"' in event[2]
