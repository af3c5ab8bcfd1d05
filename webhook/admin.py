"""The operator's status page `/admin`: HTML, its JSON and live SSE updates, behind the admin key.

Access takes the admin API key, either in a header (scripts) or exchanged once at
`POST /admin/login` for a signed session cookie (browsers). An unset key closes the page.
A session is `expiry.nonce.mac`, HMAC-SHA256 under a key derived from the admin key, so
rotating the admin key ends every session and nothing is stored server-side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import SecretStr
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from core.errors import BridgeError
from core.queue import enqueue_sync_directory
from core.settings import Settings
from core.state import guards, pbx, profiles
from core.state.profiles import ProfileState
from core.status.page import page_model
from webhook import admin_page as view
from webhook.auth import key_matches, presented_key
from webhook.forms import read_form
from webhook.oauth import run_sign_in

LOGIN_ATTEMPTS = 10  # failed logins per client address before a lockout
LOGIN_LOCKOUT_SECONDS = 900
COOKIE = "pb_admin"
COOKIE_PATH = "/admin"
SESSION_SECONDS = 8 * 3600
MAX_FORM_BYTES = 4096
FULL_DIFF_SECONDS = 2.0  # every adapter: profile states compared this often for the live feed
BLOCK_MS = 1000  # below the Redis client's socket timeout
KEEPALIVE_SECONDS = 15.0
_SESSION_CONTEXT = b"presence-bridge admin session v1"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


# ---- sessions -------------------------------------------------------------------------------


def _mac(admin_key: SecretStr, payload: str) -> str:
    session_key = hmac.new(
        admin_key.get_secret_value().encode(), _SESSION_CONTEXT, hashlib.sha256
    ).digest()
    return hmac.new(session_key, payload.encode(), hashlib.sha256).hexdigest()


def issue_session(admin_key: SecretStr, now: float) -> str:
    payload = f"{int(now) + SESSION_SECONDS}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_mac(admin_key, payload)}"


def session_valid(token: str | None, admin_key: SecretStr | None, now: float) -> bool:
    if not token or admin_key is None or len(token) > 256:
        return False
    payload, _, mac = token.rpartition(".")
    expiry = payload.partition(".")[0]
    if not expiry.isdigit():
        return False
    if not hmac.compare_digest(mac.encode(), _mac(admin_key, payload).encode()):
        return False
    return now < int(expiry)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _authorised(request: Request) -> bool:
    expected = _settings(request).process.admin_api_key
    if key_matches(presented_key(request), expected):
        return True
    return session_valid(request.cookies.get(COOKIE), expected, time.time())


def _same_origin(request: Request) -> bool:
    """A state-changing form must come from this page (SameSite=Strict already; belt and braces)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


# ---- pages ----------------------------------------------------------------------------------


def _html(
    request: Request,
    title: str,
    main: str,
    status_code: int = 200,
    *,
    live: bool = False,
    subtitle: str = "",
    nav: str = "",
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    # Sign-in forms redirect to the identity platform, which form-action must allow.
    logins = " ".join(sorted({_origin(str(t.login_base_url)) for t in _settings(request).tenants}))
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        f"connect-src 'self'; img-src 'self' data:; form-action 'self' {logins}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    body = view.document(title, main, nonce, live=live, subtitle=subtitle, nav=nav)
    return HTMLResponse(body, status_code, headers=_HEADERS | {"Content-Security-Policy": csp})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _login_page(request: Request, error: str | None = None, status_code: int = 401) -> HTMLResponse:
    if _settings(request).process.admin_api_key is None:
        return _html(request, "Status page closed", view.closed_notice(), 403)
    return _html(request, "Sign in", view.login_form(error), status_code)


async def page(request: Request) -> Response:
    if not _authorised(request):
        return _login_page(request)
    try:
        data = await _read_status(request)
    except (RedisError, OSError):
        text = "Redis is not reachable; try again soon."
        return _html(request, "Status", view.message(text), 503)
    nav = '<span id="live" class="live">connecting</span><a href="/admin/logout">Sign out</a>'
    return _html(
        request,
        "Status",
        view.status_main(data),
        live=True,
        nav=nav,
        subtitle=view.esc("as of " + view.clock(data["generated_at"])),
    )


async def status_json(request: Request) -> Response:
    if not _authorised(request):
        return JSONResponse(
            {"error": "unauthorized"}, 401, headers=_HEADERS | {"WWW-Authenticate": "Bearer"}
        )
    try:
        data = await _read_status(request)
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, 503, headers=_HEADERS)
    return Response(orjson.dumps(data), media_type="application/json", headers=_HEADERS)


async def _read_status(request: Request) -> dict[str, Any]:
    redis = request.app.state.sync_redis
    return await run_in_threadpool(page_model, redis, _settings(request), time.time())


async def login(request: Request) -> Response:
    expected = _settings(request).process.admin_api_key
    if expected is None:
        return _login_page(request)
    form = await read_form(request, MAX_FORM_BYTES)
    if form is None:
        return _login_page(request, "That request is too large.", 413)
    redis = request.app.state.redis
    address = request.client.host if request.client else "unknown"
    try:
        failures = await guards.login_failures(redis, address)
    except (RedisError, OSError):
        failures = 0  # no Redis, no throttle: the constant-time check still stands
    if failures >= LOGIN_ATTEMPTS:
        page = _login_page(request, "Too many failed attempts; try again later.", 429)
        page.headers["Retry-After"] = str(LOGIN_LOCKOUT_SECONDS)
        return page
    if not key_matches(form.get("key") or presented_key(request), expected):
        with contextlib.suppress(RedisError, OSError):
            await guards.count_login_failure(redis, address, LOGIN_LOCKOUT_SECONDS)
        return _login_page(request, "That is not the admin API key.")
    with contextlib.suppress(RedisError, OSError):
        await guards.clear_login_failures(redis, address)
    response = RedirectResponse("/admin", 303, headers=_HEADERS)
    response.set_cookie(
        COOKIE,
        issue_session(expected, time.time()),
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/admin", 303, headers=_HEADERS)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


async def sign_in(request: Request) -> Response:
    """A "Sign in" button: start core.auth's flow, as /oauth/login does; /oauth/callback ends it."""
    if not _authorised(request) or not _same_origin(request):
        return _login_page(request)
    form = await read_form(request, MAX_FORM_BYTES) or {}
    tenant, account = form.get("tenant", ""), form.get("account") or None
    settings = _settings(request)
    if settings.tenant(tenant) is None:
        return _html(request, "Sign-in", view.message(f"Unknown tenant {tenant[:64]!r}."), 404)

    try:
        auth_uri = await run_sign_in(request, lambda auth: auth.start_sign_in(tenant, account))
    except BridgeError as error:
        text = f"The sign-in cannot start: {error}"
        return _html(request, "Sign-in", view.message(text), error.status_code)
    return RedirectResponse(auth_uri, 303, headers=_HEADERS)


async def directory_sync(request: Request) -> Response:
    """On-demand directory sync (`?full=true` for a full import): queued for a worker."""
    if not _authorised(request) or not _same_origin(request):
        return JSONResponse({"error": "unauthorized"}, 401, headers=_HEADERS)
    tenant = request.path_params["tenant"]
    if _settings(request).tenant(tenant) is None:
        return JSONResponse({"error": "unknown tenant"}, 404, headers=_HEADERS)
    full = request.query_params.get("full", "").lower() in ("1", "true", "yes")
    redis = request.app.state.sync_redis

    def enqueue() -> str:
        return str(enqueue_sync_directory(redis, tenant, full).id)

    try:
        job_id = await run_in_threadpool(enqueue)
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, 503, headers=_HEADERS)
    return JSONResponse({"queued": job_id, "tenant": tenant, "full": full}, 202, headers=_HEADERS)


# ---- live updates ---------------------------------------------------------------------------


async def events(request: Request) -> Response:
    if not _authorised(request):
        return JSONResponse({"error": "unauthorized"}, 401, headers=_HEADERS)
    settings = _settings(request)
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
        headers=_HEADERS | {"X-Accel-Buffering": "no"},
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


routes = [
    Route("/admin", page, methods=["GET"]),
    Route("/admin/api/status", status_json, methods=["GET"]),
    Route("/admin/events", events, methods=["GET"]),
    Route("/admin/login", login, methods=["POST"]),
    Route("/admin/logout", logout, methods=["GET"]),
    Route("/admin/sign-in", sign_in, methods=["POST"]),
    Route("/admin/api/tenants/{tenant}/directory-sync", directory_sync, methods=["POST"]),
]
