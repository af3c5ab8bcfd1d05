"""Service-account sign-in: `/oauth/login` (admin key) -> identity platform -> `/oauth/callback`.

`/oauth/login?tenant=NAME[&account=UPN]` takes the admin API key in a header
(`Authorization: Bearer ...` or `X-API-Key`), never in the URL, and answers with a redirect to
the identity platform (302 for GET, 303 for POST, the URL also in a JSON body for scripts and
the admin page). The identity platform posts its answer to the callback (`form_post`), so the
code never sits in a URL. The callback needs no key: the one-time `state` of a flow an admin
started is its CSRF protection. msal is synchronous, so the work runs in the thread pool, on
the app's synchronous Redis client and a `GraphTokens` whose HTTP session ends with the
request (sign-ins are rare: no connection to the login host stays open).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from core.errors import BridgeError, ConfigError
from core.graph_tokens import GraphTokens
from core.settings import Settings
from webhook.admin import view
from webhook.admin._private import html_response
from webhook.auth import ADMIN_KEY_LOCKOUT_SECONDS, KeyCheck, check_admin_key, presented_key
from webhook.forms import read_form

# The callback URL carries the code: keep it out of caches and Referer headers.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
MAX_CALLBACK_BYTES = 64 * 1024  # a code, an id token at most: a few KiB
_T = TypeVar("_T")


def _json(body: object, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status,
        media_type="application/json",
        headers=_HEADERS | (headers or {}),
    )


async def run_sign_in(request: Request, work: Callable[[GraphTokens], _T]) -> _T:
    """`work` in the thread pool, on a short-lived GraphTokens over the app's sync Redis."""
    settings: Settings = request.app.state.settings
    redis = request.app.state.sync_redis

    def run() -> _T:
        with GraphTokens(settings, redis) as auth:
            return work(auth)

    return await run_in_threadpool(run)


def _status(error: BridgeError) -> int:
    return 500 if isinstance(error, ConfigError) else error.status_code


async def login(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    presented = presented_key(request)
    check = KeyCheck.DENIED if presented is None else await check_admin_key(request, presented)
    if check is KeyCheck.LOCKED:
        retry = {"Retry-After": str(ADMIN_KEY_LOCKOUT_SECONDS)}
        return _json({"error": "too many failed attempts"}, 429, retry)
    if check is KeyCheck.DENIED:
        return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": "Bearer"})
    tenant = request.query_params.get("tenant", "")
    account = request.query_params.get("account") or None
    if settings.tenant(tenant) is None:
        return _json({"error": f"unknown tenant {tenant[:64]!r}"}, 404)
    try:
        auth_uri = await run_sign_in(request, lambda auth: auth.start_sign_in(tenant, account))
    except BridgeError as error:
        return _json({"error": str(error)}, _status(error))
    status = 303 if request.method == "POST" else 302
    return _json({"auth_uri": auth_uri}, status, {"Location": auth_uri})


def _page(request: Request, title: str, text: str, status: int) -> HTMLResponse:
    """The status page's look, with its link back: where the page's "Sign in" button ends."""
    return html_response(request, title, view.message(text, title), status)


async def _answer(request: Request) -> dict[str, str] | None:
    """The identity platform's answer: a form POST (we ask for form_post) or a query."""
    if request.method == "GET":
        return dict(request.query_params)
    return await read_form(request, MAX_CALLBACK_BYTES)


async def callback(request: Request) -> Response:
    response = await _answer(request)
    if response is None:
        return _page(request, "Sign-in failed", "The sign-in response is too large.", 413)
    try:
        tenant, account = await run_sign_in(request, lambda auth: auth.finish_sign_in(response))
    except BridgeError as error:
        return _page(request, "Sign-in failed", str(error), _status(error))
    return _page(
        request,
        "Signed in",
        f"{account} now keeps the presence subscriptions of tenant {tenant}. "
        "The status page shows its health.",
        200,
    )


routes = [
    Route("/oauth/login", login, methods=["GET", "POST"]),
    Route("/oauth/callback", callback, methods=["GET", "POST"]),
]
