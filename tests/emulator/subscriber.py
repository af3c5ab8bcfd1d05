"""A real webhook receiver for tests: answers Graph's handshake and records what arrives.

`serve(app)` runs any ASGI app under uvicorn on a free loopback port in a thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from emulator.world import World


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Yield `http://127.0.0.1:<port>` while uvicorn serves `app`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", loop="asyncio", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Received:
    path: str
    query: str
    body: dict[str, Any]
    at: float


@dataclass
class Subscriber:
    """Handshake behaviour and notification answers are switchable while it runs."""

    # echo | wrong-body | wrong-type | not-200 | encoded
    handshake: str = "echo"
    statuses: list[int] = field(default_factory=list)  # answers for the next POSTs, then 202
    delay: float = 0.0  # seconds before answering a notification
    validations: list[str] = field(default_factory=list)
    posts: list[Received] = field(default_factory=list)
    base_url: str = ""
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            token = request.query_params.get("validationToken")
            if token is not None:
                with self._cond:
                    self.validations.append(token)
                    self._cond.notify_all()
                return self._answer_handshake(token)
            raw = await request.body()
            with self._cond:
                self.posts.append(
                    Received(request.url.path, request.url.query, json.loads(raw), time.monotonic())
                )
                status = self.statuses.pop(0) if self.statuses else 202
                self._cond.notify_all()
            if self.delay:
                await asyncio.sleep(self.delay)
            return Response(status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def _answer_handshake(self, token: str) -> Response:
        if self.handshake == "wrong-body":
            return PlainTextResponse(token + "x")
        if self.handshake == "wrong-type":
            return Response(token, media_type="application/json")
        if self.handshake == "not-200":
            return PlainTextResponse(token, status_code=202)
        if self.handshake == "encoded":
            from urllib.parse import quote

            return PlainTextResponse(quote(token))
        return PlainTextResponse(token)

    def url(self, path: str = "/notify") -> str:
        return self.base_url + path

    def items(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [i for p in self.posts if path in (None, p.path) for i in p.body["value"]]

    def wait_for(self, predicate: Callable[[Subscriber], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(self)` holds; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"subscriber condition not met; got {self.posts!r}")
                self._cond.wait(left)

    def wait_items(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        self.wait_for(lambda s: len(s.items(path)) >= count, timeout)
        return self.items(path)


@contextmanager
def running_subscriber(**options: Any) -> Iterator[Subscriber]:
    subscriber = Subscriber(**options)
    with serve(subscriber.app()) as base_url:
        subscriber.base_url = base_url
        yield subscriber


# -- the emulator side: the notification routes served on their own, over real HTTP -----------


def notification_app(world: World) -> Starlette:
    """The routes this half of the emulator owns, with the fault middleware and Graph errors."""
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse

    from emulator import control_graph, faults, presence, subscriptions
    from emulator.tokens import GraphError

    async def graph_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GraphError)
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    return Starlette(
        routes=[
            *presence.routes(world),
            *subscriptions.routes(world),
            *control_graph.routes(world),
        ],
        middleware=[Middleware(faults.FaultMiddleware, world=world)],
        exception_handlers={GraphError: graph_error},
    )


TENANT = "11111111-1111-1111-1111-111111111111"
APP = "22222222-2222-2222-2222-222222222222"
OTHER_APP = "33333333-3333-3333-3333-333333333333"
SERVICE_USER = "44444444-4444-4444-4444-444444444444"


def user_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


@dataclass
class Graph:
    """A running emulator (notification half) with one tenant, two apps and `users` users."""

    world: World
    base_url: str
    client: httpx.Client

    def token(
        self,
        *,
        user: str | None = SERVICE_USER,
        app: str = APP,
        scopes: tuple[str, ...] = ("Presence.Read.All", "Presence.ReadWrite"),
        roles: tuple[str, ...] = ("Presence.ReadWrite.All",),
        lifetime: float | None = None,
    ) -> dict[str, str]:
        from emulator.tokens import issue_access_token

        token = issue_access_token(
            self.world,
            tenant_id=TENANT,
            app_id=app,
            user_id=user,
            scopes=list(scopes),
            roles=list(roles),
            lifetime=lifetime,
        )
        return {"authorization": f"Bearer {token}"}

    def app_token(self, app: str = APP) -> dict[str, str]:
        return self.token(user=None, app=app)

    def expiry(self, minutes: float) -> str:
        from emulator.delivery import graph_time

        return graph_time(self.world.clock.now() + minutes * 60)

    def subscribe(
        self,
        notification_url: str,
        *,
        ids: list[str] | None = None,
        headers: dict[str, str] | None = None,
        minutes: float = 60,
        **extra: Any,
    ) -> httpx.Response:
        ids = ids if ids is not None else [user_id(1)]
        resource = "/communications/presences?$filter=id in ({})".format(
            ",".join(f"'{i}'" for i in ids)
        )
        body = {
            "changeType": "updated",
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": self.expiry(minutes),
            "clientState": "secret-state",
            **extra,
        }
        return self.client.post("/v1.0/subscriptions", json=body, headers=headers or self.token())

    def set_presence(self, uid: str, availability: str, activity: str, **extra: Any) -> None:
        response = self.client.post(
            "/_emulator/presence",
            json={"id": uid, "availability": availability, "activity": activity, **extra},
        )
        assert response.status_code == 200, response.text


@contextmanager
def running_graph(users: int = 5, settings: dict[str, Any] | None = None) -> Iterator[Graph]:
    from emulator.delivery import shutdown
    from emulator.world import App, User

    world = World()
    world.settings.update(settings or {})
    tenant = world.tenant(TENANT)
    for app_id in (APP, OTHER_APP):
        tenant.apps[app_id] = App(client_id=app_id, tenant_id=TENANT)
    for uid in [SERVICE_USER, *(user_id(n) for n in range(1, users + 1))]:
        tenant.users[uid] = User(id=uid, tenant_id=TENANT, userPrincipalName=f"{uid}@contoso.test")
    try:
        with (
            serve(notification_app(world)) as base_url,
            httpx.Client(base_url=base_url, timeout=30) as client,
        ):
            yield Graph(world, base_url, client)
    finally:
        shutdown(world)
