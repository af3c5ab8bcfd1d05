from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import httpx
import pytest
import redis

from core.queue import JOB_PROFILE_REPORTS, QUEUE_PRESENCE, ProfileReport, queue
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


def test_event_stream_refuses_a_last_event_id_it_never_sent(api: httpx.Client) -> None:
    response = api.get("/api/v1/tenants/contoso/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400


# ---- the user's own choice, sent back by the PBX side ---------------------------------------

PROFILE_URL = "/api/v1/tenants/contoso/users/alice/profile"


def queued_reports(redis_client: redis.Redis) -> list[ProfileReport | None]:
    jobs = queue(redis_client, QUEUE_PRESENCE).get_jobs()
    assert all(j.func_name == JOB_PROFILE_REPORTS for j in jobs)
    return [ProfileReport.from_item(item) for j in jobs for item in j.args[1]]


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_a_profile_set_on_the_pbx_side_is_handed_to_the_workers(
    api: httpx.Client, redis_client: redis.Redis, method: str
) -> None:
    response = api.request(method, PROFILE_URL, json={"profile": "Lunch"})
    assert (response.status_code, response.json()) == (202, {"user": "alice", "profile": "Lunch"})
    [report] = queued_reports(redis_client)
    assert report is not None
    assert (report.user, report.profile, report.source, report.on_pbx) == (
        "alice",
        "Lunch",
        "builtin-api",
        False,
    )
    # Published by the worker, not here: the web process never writes a served profile.
    assert api.get(PROFILE_URL).status_code == 404


@pytest.mark.parametrize(
    "body",
    [b"not json", b'["Lunch"]', b"{}", b'{"profile": ""}', b'{"profile": "   "}',
     b'{"profile": 7}', b'{"profile": "Lunch\\u0000"}', b'{"profile": "' + b"x" * 129 + b'"}'],
    ids=["not-json", "not-an-object", "no-profile", "empty", "blank", "not-a-string",
         "control-character", "too-long"],
)  # fmt: skip
def test_a_profile_that_is_no_usable_name_is_refused(
    api: httpx.Client, redis_client: redis.Redis, body: bytes
) -> None:
    response = api.put(PROFILE_URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "profile" in response.json()["error"]
    assert queued_reports(redis_client) == []


def test_setting_a_profile_needs_the_key(api: httpx.Client, redis_client: redis.Redis) -> None:
    response = httpx.put(f"{api.base_url}{PROFILE_URL}", json={"profile": "Lunch"})
    assert response.status_code == 401
    assert queued_reports(redis_client) == []


@pytest.mark.parametrize("last", ["garbage", "1-x", "²-1", "1" * 30 + "-0"])
def test_a_last_event_id_the_stream_never_sent_is_a_400(api: httpx.Client, last: str) -> None:
    headers = [(b"Last-Event-ID", last.encode("utf-8"))]
    response = api.get("/api/v1/tenants/contoso/events", headers=headers)
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]
