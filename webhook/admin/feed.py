"""`GET /admin/events`: live presence and profile changes for the page, as Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.state import pbx, profiles
from core.state.profiles import ProfileState
from webhook.admin._private import HEADERS, settings_of
from webhook.admin.sessions import refusal

FULL_DIFF_SECONDS = 2.0  # every adapter: profile states compared this often for the live feed
BLOCK_MS = 1000  # below the Redis client's socket timeout
KEEPALIVE_SECONDS = 15.0


async def events(request: Request) -> Response:
    if refused := await refusal(request, html=False):
        return refused
    settings = settings_of(request)
    redis = request.app.state.redis
    feed = ChangeFeed([t.name for t in settings.tenants])
    builtin = [t.name for t in settings.tenants if t.pbx.adapter == "builtin"]
    positions: dict[str, str] = {}  # builtin tenant -> last stream id seen
    try:
        # Before the response starts, so a client that sees the stream open misses nothing.
        positions = {t: await pbx.builtin_events_position(redis, t) for t in builtin}
        await feed.everything(redis)  # the snapshot the page was rendered from
    except (RedisError, OSError):
        pass  # the loop retries; the page keeps what it shows
    return StreamingResponse(
        _stream(request, feed, positions),
        media_type="text/event-stream",
        headers=HEADERS | {"X-Accel-Buffering": "no"},
    )


class ChangeFeed:
    """Per PBX user, its profile state (Teams presence and profile) compared with the last seen."""

    def __init__(self, tenants: list[str]) -> None:
        self.tenants = tenants
        self.seen: dict[str, dict[str, bytes]] = {}  # tenant -> user -> stored state bytes

    async def everything(self, redis: Any) -> list[dict[str, Any]]:
        out = []
        for tenant in self.tenants:
            states = await profiles.load_all_raw(redis, tenant)
            out += self._compare(tenant, states, prime=tenant not in self.seen)
        return out

    async def users(self, redis: Any, tenant: str, users: list[str]) -> list[dict[str, Any]]:
        states = await profiles.load_raw(redis, tenant, users)
        return self._compare(tenant, states, prime=False)

    def _compare(
        self, tenant: str, states: dict[str, bytes], *, prime: bool
    ) -> list[dict[str, Any]]:
        seen = self.seen.setdefault(tenant, {})
        changed = [(u, s) for u, s in states.items() if seen.get(u) != s]
        seen.update(changed)
        if prime:
            return []  # the page already shows these
        out = []
        for user, raw in sorted(changed):
            state = ProfileState.from_bytes(raw)
            out.append(
                {
                    "tenant": tenant,
                    "user": user,
                    "profile": state.current,
                    "availability": state.availability,
                    "activity": state.activity,
                }
            )
        return out


def _event(change: dict[str, Any]) -> bytes:
    return b"event: presence\ndata: " + orjson.dumps(change) + b"\n\n"


async def _stream(
    request: Request, feed: ChangeFeed, positions: dict[str, str]
) -> AsyncIterator[bytes]:
    """`builtin` tenants' profile stream wakes the feed at once for the users it names; a full
    comparison every FULL_DIFF_SECONDS covers every adapter and changes that moved no profile."""
    redis = request.app.state.redis
    yield b"retry: 3000\n\n"
    loop = asyncio.get_running_loop()
    last_full = last_sent = loop.time()
    while not await request.is_disconnected():
        changes: list[dict[str, Any]] = []
        try:
            if positions:
                read = await pbx.read_builtin_events(redis, positions, block_ms=BLOCK_MS,
                                                     count=500)  # fmt: skip
            else:
                await asyncio.sleep(BLOCK_MS / 1000)
                read = []
            named: dict[str, set[str]] = {}  # tenant -> users whose profile moved
            for event in read:
                positions[event.tenant] = event.id
                served = event.profile
                if served is not None:
                    named.setdefault(event.tenant, set()).add(served.user)
            for tenant, users in named.items():
                changes += await feed.users(redis, tenant, sorted(users))
            if loop.time() - last_full >= FULL_DIFF_SECONDS:
                last_full = loop.time()
                changes += await feed.everything(redis)
        except (RedisError, OSError):
            await asyncio.sleep(1.0)  # Redis is away; the page keeps its connection
        for change in changes:
            yield _event(change)
            last_sent = loop.time()
        if loop.time() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = loop.time()
            yield b": keep-alive\n\n"
