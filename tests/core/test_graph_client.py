"""GraphClient against a scripted Starlette app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.errors import GraphError
from core.graph import (
    GraphBackingOff,
    GraphClient,
    GraphRequestError,
    format_datetime,
    format_duration,
)
from core.state import backoff
from core.state.backoff import Backoff
from emulator import tls
from emulator.harness.served import ServedApp

TOKEN = "eyJ0eXAi.first-token-secret.sig"  # noqa: S105 - a test value
FRESH_TOKEN = "eyJ0eXAi.fresh-token-secret.sig"  # noqa: S105


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_path: str


Reply = tuple[int, dict[str, str], Any]
Responder = Reply | Callable[[Received], Reply] | str  # "hang" waits for the client to go away


@dataclass
class ScriptedGraph:
    """Answers each (method, path) from a queue of replies, then 200 {}; records every request."""

    received: list[Received] = field(default_factory=list)
    script: dict[tuple[str, str], deque[Responder]] = field(default_factory=dict)
    base_url: str = ""

    def on(self, method: str, path: str, *replies: Responder) -> None:
        self.script.setdefault((method, path), deque()).extend(replies)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.received]

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        received = Received(
            request.method,
            request.url.path,
            dict(request.query_params),
            dict(request.headers),
            json.loads(raw) if raw else None,
            request.scope["raw_path"].decode("ascii"),
        )
        self.received.append(received)
        queue = self.script.get((request.method, request.url.path))
        responder: Responder = queue.popleft() if queue else (200, {}, {})
        if responder == "hang":
            while not await request.is_disconnected():
                await asyncio.sleep(0.01)
            return Response(status_code=499)
        reply = responder(received) if callable(responder) else responder
        assert not isinstance(reply, str)
        status, headers, body = reply
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)


@pytest.fixture(scope="module")
def server_state() -> Iterator[tuple[ScriptedGraph, int]]:
    state = ScriptedGraph()
    methods = ["GET", "POST", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", state.handle, methods=methods)])
    with ServedApp(app, lifespan="off") as served:
        state.base_url = served.url
        yield state, served.port


@pytest.fixture
def graph(server_state: tuple[ScriptedGraph, int]) -> ScriptedGraph:
    state, _ = server_state
    state.received.clear()
    state.script.clear()
    return state


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Tokens:
    fresh_calls: int = 0

    def current(self) -> str:
        return TOKEN

    def fresh(self) -> str:
        self.fresh_calls += 1
        return FRESH_TOKEN


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


ClientFactory = Callable[..., GraphClient]


@pytest.fixture
def client_factory(graph: ScriptedGraph, sleeps: Sleeps, tokens: Tokens) -> Iterator[ClientFactory]:
    clients: list[GraphClient] = []

    def build(**overrides: Any) -> GraphClient:
        options: dict[str, Any] = {
            "fresh_token": tokens.fresh,
            "sleep": sleeps,
            "max_attempts": 4,
            "rng": random.Random(1),
            "timeout": 5.0,
        }
        options.update(overrides)
        base = options.pop("base_url", graph.base_url)
        client = GraphClient(base, tokens.current, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(client_factory: ClientFactory) -> GraphClient:
    return client_factory()


def graph_error(status: int, code: str, message: str) -> Reply:
    return (status, {}, {"error": {"code": code, "message": message, "innerError": {}}})


# ---- plain calls --------------------------------------------------------------------------------


def test_get_returns_json_and_sends_bearer_token(graph: ScriptedGraph, client: GraphClient) -> None:
    graph.on("GET", "/v1.0/users/u-1/presence", (200, {}, {"id": "u-1", "availability": "Busy"}))
    assert client.get("/users/u-1/presence") == {"id": "u-1", "availability": "Busy"}
    assert graph.received[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_no_content_answer_returns_empty_dict(graph: ScriptedGraph, client: GraphClient) -> None:
    graph.on("DELETE", "/v1.0/subscriptions/s-1", (204, {}, None))
    assert client.delete("/subscriptions/s-1") == {}


# ---- throttling and retries ---------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(
    graph: ScriptedGraph, client: GraphClient, sleeps: Sleeps
) -> None:
    body = graph_error(429, "TooManyRequests", "slow down")[2]
    graph.on(
        "GET", "/v1.0/users", (429, {"Retry-After": "7"}, body), (429, {"Retry-After": "3"}, body)
    )
    graph.on("GET", "/v1.0/users", (200, {}, {"value": [{"id": "u-1"}]}))
    assert client.get("/users") == {"value": [{"id": "u-1"}]}
    assert sleeps.delays == [7.0, 3.0]
    assert len(graph.received) == 3


def test_429_persisting_raises_transient_error_after_max_attempts(
    graph: ScriptedGraph, client: GraphClient, sleeps: Sleeps
) -> None:
    reply = (429, {"Retry-After": "2"}, graph_error(429, "TooManyRequests", "slow")[2])
    graph.on("GET", "/v1.0/users", *[reply] * 10)
    with pytest.raises(GraphRequestError) as caught:
        client.get("/users")
    assert (caught.value.status, caught.value.code, caught.value.transient) == (
        429,
        "TooManyRequests",
        True,
    )
    assert caught.value.retry_after == 2.0
    assert len(graph.received) == 4
    assert sleeps.delays == [2.0, 2.0, 2.0]


def test_long_retry_after_is_handed_to_the_caller(
    graph: ScriptedGraph, client_factory: ClientFactory, sleeps: Sleeps
) -> None:
    graph.on("GET", "/v1.0/users", (429, {"Retry-After": "300"}, None))
    with pytest.raises(GraphRequestError) as caught:
        client_factory(max_retry_after=60.0).get("/users")
    assert caught.value.retry_after == 300.0
    assert caught.value.transient is True
    assert sleeps.delays == []
    assert len(graph.received) == 1


def test_5xx_burst_backs_off_exponentially(
    graph: ScriptedGraph, client_factory: ClientFactory, sleeps: Sleeps
) -> None:
    unavailable = graph_error(503, "serviceNotAvailable", "try later")
    graph.on("GET", "/v1.0/subscriptions", unavailable, unavailable, unavailable)
    graph.on("GET", "/v1.0/subscriptions", (200, {}, {"value": []}))
    result = client_factory(max_attempts=5, backoff_base=1.0).get("/subscriptions")
    assert result == {"value": []}
    assert len(graph.received) == 4
    # Equal jitter: each wait lies in [step/2, step] for steps 1, 2, 4 seconds.
    for delay, step in zip(sleeps.delays, [1.0, 2.0, 4.0], strict=True):
        assert step / 2 <= delay <= step


def test_backoff_is_capped(
    graph: ScriptedGraph, client_factory: ClientFactory, sleeps: Sleeps
) -> None:
    graph.on("GET", "/v1.0/users", *[graph_error(500, "generalException", "boom")] * 6)
    with pytest.raises(GraphError):
        client_factory(max_attempts=6, backoff_base=1.0, backoff_max=3.0).get("/users")
    assert len(sleeps.delays) == 5
    assert max(sleeps.delays) <= 3.0
    assert min(sleeps.delays[2:]) >= 1.5


def test_503_with_retry_after_uses_it(
    graph: ScriptedGraph, client: GraphClient, sleeps: Sleeps
) -> None:
    graph.on("GET", "/v1.0/users", (503, {"Retry-After": "4"}, None), (200, {}, {"value": []}))
    client.get("/users")
    assert sleeps.delays == [4.0]


def test_5xx_persisting_raises_graph_error_from_body(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    graph.on("POST", "/v1.0/subscriptions", *[graph_error(502, "badGateway", "upstream down")] * 4)
    with pytest.raises(GraphError) as caught:
        client.post("/subscriptions", {"resource": "x"})
    error = caught.value
    assert (error.status, error.code, error.transient) == (502, "badGateway", True)
    assert "upstream down" in str(error)
    assert len(graph.received) == 4


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "BadRequest"), (403, "Forbidden"), (404, "Request_ResourceNotFound"), (409, "Conflict")],
)
def test_4xx_is_permanent_and_not_retried(
    graph: ScriptedGraph, client: GraphClient, sleeps: Sleeps, status: int, code: str
) -> None:
    graph.on("GET", "/v1.0/subscriptions/s-9", graph_error(status, code, "nope"))
    with pytest.raises(GraphError) as caught:
        client.get("/subscriptions/s-9")
    assert (caught.value.status, caught.value.code, caught.value.transient) == (status, code, False)
    assert len(graph.received) == 1
    assert sleeps.delays == []


def test_identity_platform_error_body_is_understood(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    body = {"error": "invalid_grant", "error_description": "AADSTS50173: grant expired"}
    graph.on("POST", "/v1.0/thing", (400, {}, body))
    with pytest.raises(GraphError) as caught:
        client.post("/thing", {})
    assert caught.value.code == "invalid_grant"
    assert "AADSTS50173" in str(caught.value)


def test_read_timeout_is_retried(
    graph: ScriptedGraph, client_factory: ClientFactory, sleeps: Sleeps
) -> None:
    graph.on("GET", "/v1.0/users", "hang", (200, {}, {"value": [{"id": "u-1"}]}))
    client = client_factory(timeout=0.3)
    assert client.get("/users") == {"value": [{"id": "u-1"}]}
    assert len(sleeps.delays) == 1
    assert len(graph.received) == 2


def test_connection_refused_raises_transient_error(
    client_factory: ClientFactory, sleeps: Sleeps
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()  # nothing listens here any more
    client = client_factory(base_url=f"http://127.0.0.1:{closed_port}", max_attempts=3)
    with pytest.raises(GraphRequestError) as caught:
        client.get("/users")
    assert (caught.value.status, caught.value.transient) == (0, True)
    assert len(sleeps.delays) == 2


# ---- tokens ------------------------------------------------------------------------------------


def test_401_fetches_a_fresh_token_and_retries_once(
    graph: ScriptedGraph, client: GraphClient, tokens: Tokens, sleeps: Sleeps
) -> None:
    graph.on("GET", "/v1.0/me", graph_error(401, "InvalidAuthenticationToken", "expired"))
    graph.on("GET", "/v1.0/me", (200, {}, {"id": "me"}))
    assert client.get("/me") == {"id": "me"}
    assert [r.headers["authorization"] for r in graph.received] == [
        f"Bearer {TOKEN}",
        f"Bearer {FRESH_TOKEN}",
    ]
    assert tokens.fresh_calls == 1
    assert sleeps.delays == []


def test_second_401_raises_without_leaking_tokens(
    graph: ScriptedGraph, client: GraphClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    unauthorized = graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    graph.on("GET", "/v1.0/me", unauthorized, unauthorized)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GraphError) as caught:
        client.get("/me")
    assert (caught.value.status, caught.value.transient) == (401, False)
    assert tokens.fresh_calls == 1
    assert len(graph.received) == 2
    text = f"{caught.value}{caught.value!r}{caplog.text}"
    assert TOKEN not in text
    assert FRESH_TOKEN not in text
    assert "secret" not in text


def test_error_message_omits_query_strings(graph: ScriptedGraph, client: GraphClient) -> None:
    link = f"{graph.base_url}/v1.0/users?$skiptoken=opaque-skip-value"
    graph.on("GET", "/v1.0/users", graph_error(400, "BadRequest", "bad"))
    with pytest.raises(GraphError) as caught:
        client.get(link)
    assert "opaque-skip-value" not in str(caught.value)
    assert "GET /v1.0/users" in str(caught.value)


def test_token_is_never_sent_to_another_origin(graph: ScriptedGraph, client: GraphClient) -> None:
    evil_link = "http://127.0.0.2:9/v1.0/users?$skiptoken=x"
    graph.on(
        "GET", "/v1.0/users", (200, {}, {"value": [{"id": "1"}], "@odata.nextLink": evil_link})
    )
    with pytest.raises(ValueError, match="another origin"):
        list(client.paginate("/users"))
    assert len(graph.received) == 1


# ---- paging ------------------------------------------------------------------------------------


def test_paginate_follows_next_links_with_headers_on_every_page(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    page2 = f"{graph.base_url}/v1.0/users?$skiptoken=p2"
    page3 = f"{graph.base_url}/v1.0/users?$skiptoken=p3"
    graph.on(
        "GET",
        "/v1.0/users",
        (200, {}, {"value": [{"id": "1"}, {"id": "2"}], "@odata.nextLink": page2}),
        (200, {}, {"value": [], "@odata.nextLink": page3}),  # Graph may send empty pages
        (200, {}, {"value": [{"id": "3"}]}),
    )
    pages = client.paginate(
        "/users", {"$select": "id,mail", "$top": "999"}, headers={"ConsistencyLevel": "eventual"}
    )
    assert [u["id"] for u in pages] == ["1", "2", "3"]
    assert pages.delta_link is None
    assert [r.query for r in graph.received] == [
        {"$select": "id,mail", "$top": "999"},
        {"$skiptoken": "p2"},
        {"$skiptoken": "p3"},
    ]
    assert {r.headers["consistencylevel"] for r in graph.received} == {"eventual"}


def test_paginate_retries_a_page_with_the_same_link(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    page2 = f"{graph.base_url}/v1.0/users?$skiptoken=p2"
    graph.on(
        "GET",
        "/v1.0/users",
        (200, {}, {"value": [{"id": "1"}], "@odata.nextLink": page2}),
        graph_error(503, "serviceNotAvailable", "later"),
        (200, {}, {"value": [{"id": "2"}]}),
    )
    assert [u["id"] for u in client.paginate("/users")] == ["1", "2"]
    assert [r.query for r in graph.received][1:] == [{"$skiptoken": "p2"}, {"$skiptoken": "p2"}]


def test_users_delta_first_round_selects_and_exposes_delta_link(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    next_link = f"{graph.base_url}/v1.0/users/delta?$skiptoken=d2"
    delta_link = f"{graph.base_url}/v1.0/users/delta?$deltatoken=t1"
    graph.on(
        "GET",
        "/v1.0/users/delta",
        (200, {}, {"value": [{"id": "1"}], "@odata.nextLink": next_link}),
        (
            200,
            {},
            {
                "value": [{"id": "2", "@removed": {"reason": "deleted"}}],
                "@odata.deltaLink": delta_link,
            },
        ),
    )
    pages = client.users_delta(None, ["id", "userPrincipalName"])
    items = list(pages)
    assert [i["id"] for i in items] == ["1", "2"]
    assert pages.delta_link == delta_link
    assert pages.pages == 2
    assert graph.received[0].query == {"$select": "id,userPrincipalName"}


def test_users_delta_resumes_from_the_stored_link(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    stored = f"{graph.base_url}/v1.0/users/delta?$deltatoken=t1"
    newer = f"{graph.base_url}/v1.0/users/delta?$deltatoken=t2"
    graph.on("GET", "/v1.0/users/delta", (200, {}, {"value": [], "@odata.deltaLink": newer}))
    pages = client.users_delta(stored, ["id"])
    assert list(pages) == []
    assert pages.delta_link == newer
    assert graph.received[0].query == {"$deltatoken": "t1"}


def test_expired_delta_token_surfaces_410(graph: ScriptedGraph, client: GraphClient) -> None:
    stored = f"{graph.base_url}/v1.0/users/delta?$deltatoken=old"
    graph.on("GET", "/v1.0/users/delta", graph_error(410, "syncStateNotFound", "expired"))
    with pytest.raises(GraphError) as caught:
        list(client.users_delta(stored, ["id"]))
    assert (caught.value.status, caught.value.code) == (410, "syncStateNotFound")


# ---- convenience operations --------------------------------------------------------------------


def echo_presences(received: Received) -> Reply:
    ids = received.body["ids"]
    return (200, {}, {"value": [{"id": i, "availability": "Available"} for i in ids]})


def test_presences_are_read_in_chunks_of_650(graph: ScriptedGraph, client: GraphClient) -> None:
    ids = [f"u-{n}" for n in range(1400)]
    graph.on("POST", "/v1.0/communications/getPresencesByUserId", *[echo_presences] * 3)
    presences = client.get_presences_by_user_id(ids)
    assert [p["id"] for p in presences] == ids
    assert [len(r.body["ids"]) for r in graph.received] == [650, 650, 100]


def test_no_ids_means_no_presence_request(graph: ScriptedGraph, client: GraphClient) -> None:
    assert client.get_presences_by_user_id([]) == []
    assert graph.received == []


def test_subscription_calls_have_graphs_shapes(graph: ScriptedGraph, client: GraphClient) -> None:
    graph.on("POST", "/v1.0/subscriptions", (201, {}, {"id": "s-1"}))
    graph.on("PATCH", "/v1.0/subscriptions/s-1", (200, {}, {"id": "s-1"}))
    graph.on("DELETE", "/v1.0/subscriptions/s-1", (204, {}, None))
    body = {"changeType": "updated", "resource": "/communications/presences/u-1"}
    expiry = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC)
    assert client.create_subscription(body) == {"id": "s-1"}
    assert client.renew_subscription("s-1", expiry) == {"id": "s-1"}
    assert client.delete_subscription("s-1") is True
    assert graph.paths() == [
        "POST /v1.0/subscriptions",
        "PATCH /v1.0/subscriptions/s-1",
        "DELETE /v1.0/subscriptions/s-1",
    ]
    assert graph.received[0].body == body
    assert graph.received[1].body == {"expirationDateTime": "2026-03-01T10:30:00Z"}


def test_deleting_an_unknown_subscription_is_not_an_error(
    graph: ScriptedGraph, client: GraphClient
) -> None:
    graph.on("DELETE", "/v1.0/subscriptions/gone", graph_error(404, "ResourceNotFound", "x"))
    assert client.delete_subscription("gone") is False


def test_list_subscriptions_reads_every_page(graph: ScriptedGraph, client: GraphClient) -> None:
    page2 = f"{graph.base_url}/v1.0/subscriptions?$skiptoken=2"
    graph.on(
        "GET",
        "/v1.0/subscriptions",
        (200, {}, {"value": [{"id": "a"}], "@odata.nextLink": page2}),
        (200, {}, {"value": [{"id": "b"}]}),
    )
    assert [s["id"] for s in client.list_subscriptions()] == ["a", "b"]


def test_set_presence_sends_session_and_duration(graph: ScriptedGraph, client: GraphClient) -> None:
    client.set_presence("u/1", "app-id", "Busy", "InACall", dt.timedelta(minutes=30))
    assert graph.received[0].raw_path == "/v1.0/users/u%2F1/presence/setPresence"
    assert graph.received[0].body == {
        "sessionId": "app-id",
        "availability": "Busy",
        "activity": "InACall",
        "expirationDuration": "PT30M",
    }


@pytest.mark.parametrize("minutes", [4, 241])
def test_set_presence_refuses_durations_graph_rejects(
    graph: ScriptedGraph, client: GraphClient, minutes: int
) -> None:
    with pytest.raises(ValueError, match="PT5M to PT4H"):
        client.set_presence("u-1", "app", "Busy", "InACall", dt.timedelta(minutes=minutes))
    assert graph.received == []


@pytest.mark.parametrize(("status", "cleared"), [(200, True), (404, False)])
def test_clear_presence(
    graph: ScriptedGraph, client: GraphClient, status: int, cleared: bool
) -> None:
    graph.on("POST", "/v1.0/users/u-1/presence/clearPresence", graph_error(status, "x", "y"))
    assert client.clear_presence("u-1", "app-id") is cleared
    assert graph.received[0].body == {"sessionId": "app-id"}


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (dt.timedelta(minutes=5), "PT5M"),
        (dt.timedelta(hours=1, minutes=30), "PT1H30M"),
        (dt.timedelta(hours=4), "PT4H"),
        (dt.timedelta(seconds=90), "PT1M30S"),
        (dt.timedelta(0), "PT0S"),
    ],
)
def test_format_duration(span: dt.timedelta, text: str) -> None:
    assert format_duration(span) == text


def test_format_datetime_needs_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_datetime(dt.datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


# ---- a back-off shared by every worker ------------------------------------------------------


@pytest.fixture
def shared(redis_client: redis.Redis) -> Backoff:
    return backoff.graph(redis_client, "contoso", "app-1")


@pytest.mark.parametrize(
    ("status", "headers"), [(429, {"Retry-After": "30"}), (503, {}), (504, {"Retry-After": "5"})]
)
def test_a_throttle_is_recorded_for_every_worker_and_not_slept_on(
    graph: ScriptedGraph,
    client_factory: ClientFactory,
    shared: Backoff,
    sleeps: Sleeps,
    status: int,
    headers: dict[str, str],
) -> None:
    graph.on("GET", "/v1.0/users", (status, headers, graph_error(status, "Throttled", "")[2]))
    with pytest.raises(GraphBackingOff) as caught:
        client_factory(backoff=shared).get("/users")
    assert (len(graph.received), sleeps.delays) == (1, [])
    assert caught.value.backing_off and caught.value.retry_after is not None
    state = shared.state()
    assert state is not None and state.status == status


def test_nothing_is_sent_while_graph_backs_off(
    graph: ScriptedGraph, client_factory: ClientFactory, shared: Backoff
) -> None:
    shared.failed(429, 60.0, "429 TooManyRequests")
    with pytest.raises(GraphBackingOff) as caught:
        client_factory(backoff=shared).get("/users")  # another worker's client
    assert graph.received == []
    assert caught.value.retry_after is not None and 55 <= caught.value.retry_after <= 60


def test_the_probe_after_the_time_clears_the_back_off(
    graph: ScriptedGraph, client_factory: ClientFactory, shared: Backoff
) -> None:
    shared.failed(429, 0.0, "429 TooManyRequests")  # a second's rest, already over below
    shared.redis.hset(backoff.record_key("contoso", shared.peer), "until", "0")
    assert client_factory(backoff=shared).get("/users") == {}
    assert shared.state() is None


# ---- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[int, Path]]:
    files = tls.generate()

    async def ok(request: Request) -> Response:
        return JSONResponse({"tls": True})

    app = Starlette(routes=[Route("/v1.0/ping", ok)])
    with ServedApp(app, tls=files, lifespan="off") as served:
        yield served.port, files.ca_path
    files.remove()


def test_ca_bundle_path_is_trusted(
    tls_server: tuple[int, Path], client_factory: ClientFactory
) -> None:
    port, ca_path = tls_server
    client = client_factory(base_url=f"https://127.0.0.1:{port}", verify=ca_path)
    assert client.get("/ping") == {"tls": True}


def test_unknown_ca_is_refused(tls_server: tuple[int, Path], client_factory: ClientFactory) -> None:
    port, _ = tls_server
    client = client_factory(base_url=f"https://127.0.0.1:{port}", max_attempts=1)
    with pytest.raises(GraphRequestError) as caught:
        client.get("/ping")
    assert caught.value.status == 0
