"""Fault switches: per-route 429s, 5xx bursts, added latency, and delivery mischief.

Route faults live in an ASGI middleware (`FaultMiddleware`) wrapped around the whole emulator app,
so every module's routes pass through it; `/_emulator/` control routes are never faulted.
Delivery faults are consumed by `emulator.delivery` one notification at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.tokens import error_body
from emulator.world import World, extension

CONTROL_PREFIX = "/_emulator/"
ROUTE_FAULT_KINDS = ("throttle", "error", "latency")
DELIVERY_FAULT_KINDS = ("drop", "duplicate", "delay", "reorder")


@dataclass
class RouteFault:
    id: str
    kind: str  # throttle (429 + Retry-After), error (a 5xx), latency (then the real answer)
    path: str  # a regular expression matched against the request path
    method: str | None = None
    remaining: int | None = None  # None: until removed
    status: int = 503
    retry_after: int = 10
    latency: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeliveryFault:
    kind: str  # drop, duplicate, delay (value = emulated seconds), reorder (value = group size)
    remaining: int
    value: float = 0.0


@dataclass
class FaultState:
    routes: list[RouteFault] = field(default_factory=list)
    delivery: list[DeliveryFault] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)


def state(world: World) -> FaultState:
    return extension(world, "faults.state", FaultState)


def add_route_fault(world: World, spec: dict[str, Any]) -> RouteFault:
    """Add a switch from a control-API body; raise ValueError when it makes no sense."""
    kind = spec.get("kind")
    if kind not in ROUTE_FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ROUTE_FAULT_KINDS)}")
    path = spec.get("path", ".*")
    try:
        re.compile(str(path))
    except re.error as exc:
        raise ValueError(f"path is not a regular expression: {exc}") from None
    count = spec.get("count")
    status = int(spec.get("status", 429 if kind == "throttle" else 503))
    if kind == "error" and not 500 <= status <= 599:
        raise ValueError("an error fault needs a 5xx status")
    fault = RouteFault(
        id=f"fault-{next(state(world).counter)}",
        kind=str(kind),
        path=str(path),
        method=spec.get("method"),
        remaining=None if count is None else int(count),
        status=429 if kind == "throttle" else status,
        retry_after=int(spec.get("retryAfter", 10)),
        latency=float(spec.get("latency", 0.0)),
    )
    with world.lock:
        state(world).routes.append(fault)
    return fault


def add_delivery_fault(world: World, spec: dict[str, Any]) -> DeliveryFault:
    kind = spec.get("kind")
    if kind not in DELIVERY_FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DELIVERY_FAULT_KINDS)}")
    count = int(spec.get("count", 1))
    value = float(
        spec.get("seconds", 0.0) if kind == "delay" else count if kind == "reorder" else 0
    )
    if count < 1 or (kind == "delay" and value <= 0):
        raise ValueError("count must be >= 1 and a delay needs seconds > 0")
    fault = DeliveryFault(kind=str(kind), remaining=count, value=value)
    with world.lock:
        state(world).delivery.append(fault)
    return fault


def clear(world: World) -> None:
    with world.lock:
        faults = state(world)
        faults.routes.clear()
        faults.delivery.clear()


def take_route_fault(world: World, method: str, path: str) -> RouteFault | None:
    """The first live switch for this request, counting it as used."""
    with world.lock:
        faults = state(world)
        for fault in faults.routes:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        faults.routes.remove(fault)
                return fault
    return None


def delivery_action(world: World) -> tuple[str, float] | None:
    """What to do to the next notification: (kind, value), or None to deliver it normally."""
    with world.lock:
        faults = state(world).delivery
        if not faults:
            return None
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        return fault.kind, fault.value


class FaultMiddleware:
    """Install with `Middleware(FaultMiddleware, world=world)` in `create_app`."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = take_route_fault(self.world, scope["method"], path)
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "latency":
            await asyncio.sleep(fault.latency)
            await self.app(scope, receive, send)
            return
        if fault.kind == "throttle":
            # Graph's throttling answer: 429, Retry-After in seconds, error code TooManyRequests.
            body = orjson.dumps(
                error_body("TooManyRequests", "Too many requests, please try again later.")
            )
            headers = [(b"retry-after", str(fault.retry_after).encode())]
        else:
            body = orjson.dumps(
                error_body("serviceNotAvailable", "The service is temporarily unavailable.")
            )
            headers = (
                [(b"retry-after", str(fault.retry_after).encode())] if fault.status == 503 else []
            )
        await send(
            {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
