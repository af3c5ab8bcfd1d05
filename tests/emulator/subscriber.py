"""A real webhook receiver for tests: answers Graph's handshake and records what arrives."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from emulator.harness.served import ServedApp


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
    with ServedApp(subscriber.app(), lifespan="off", loop="asyncio") as served:
        subscriber.base_url = served.url
        yield subscriber
