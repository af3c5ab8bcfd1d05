"""Access to the admin page: the admin API key, session cookies, login, logout, the login throttle.

Access takes the admin API key, either in a header (scripts) or exchanged once at
`POST /admin/login` for a signed session cookie (browsers). An unset key closes the page.
A session is `expiry.nonce.mac`, HMAC-SHA256 under a key derived from the admin key, so
rotating the admin key ends every session and nothing is stored server-side.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time

from pydantic import SecretStr
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from core.state import guards
from webhook.admin import view
from webhook.admin._private import HEADERS, MAX_FORM_BYTES, html_response, settings_of
from webhook.auth import key_matches, presented_key
from webhook.forms import read_form

LOGIN_ATTEMPTS = 10  # failed logins per client address before a lockout
LOGIN_LOCKOUT_SECONDS = 900
COOKIE = "pb_admin"
COOKIE_PATH = "/admin"
SESSION_SECONDS = 8 * 3600
_SESSION_CONTEXT = b"presence-bridge admin session v1"


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


def authorised(request: Request) -> bool:
    """The admin key in a header, or a valid session cookie."""
    expected = settings_of(request).process.admin_api_key
    if key_matches(presented_key(request), expected):
        return True
    return session_valid(request.cookies.get(COOKIE), expected, time.time())


def login_page(request: Request, error: str | None = None, status_code: int = 401) -> HTMLResponse:
    """The login form (what an unauthorised browser sees), or the notice of a closed page."""
    if settings_of(request).process.admin_api_key is None:
        return html_response(request, "Status page closed", view.closed_notice(), 403)
    return html_response(request, "Sign in", view.login_form(error), status_code)


async def login(request: Request) -> Response:
    expected = settings_of(request).process.admin_api_key
    if expected is None:
        return login_page(request)
    form = await read_form(request, MAX_FORM_BYTES)
    if form is None:
        return login_page(request, "That request is too large.", 413)
    redis = request.app.state.redis
    address = request.client.host if request.client else "unknown"
    try:
        failures = await guards.login_failures(redis, address)
    except (RedisError, OSError):
        failures = 0  # no Redis, no throttle: the constant-time check still stands
    if failures >= LOGIN_ATTEMPTS:
        page = login_page(request, "Too many failed attempts; try again later.", 429)
        page.headers["Retry-After"] = str(LOGIN_LOCKOUT_SECONDS)
        return page
    if not key_matches(form.get("key") or presented_key(request), expected):
        with contextlib.suppress(RedisError, OSError):
            await guards.count_login_failure(redis, address, LOGIN_LOCKOUT_SECONDS)
        return login_page(request, "That is not the admin API key.")
    with contextlib.suppress(RedisError, OSError):
        await guards.clear_login_failures(redis, address)
    response = RedirectResponse("/admin", 303, headers=HEADERS)
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
    response = RedirectResponse("/admin", 303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
