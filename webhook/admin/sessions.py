"""Access to the admin page: the admin API key, session cookies, login, logout.

Access takes the admin API key, either in a header (scripts) or exchanged once at
`POST /admin/login` for a signed session cookie (browsers). An unset key closes the page.
A session is `expiry.nonce.mac`, HMAC-SHA256 under a key derived from the admin key, so
rotating the admin key ends every session and nothing is stored server-side. Every use of
the key itself goes through the throttle of `webhook.auth.check_admin_key`.

Every form the page posts carries the session's form token (an HMAC of the session under its
own derived key), checked in constant time: the CSRF defence. It does not lean on `Origin`,
which Chromium sends as "null" from a page with `Referrer-Policy: no-referrer`; a present,
real Origin of another host is still refused. A request with the key in a header needs no
token (a browser never adds that header by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from webhook.admin import view
from webhook.admin._private import HEADERS, MAX_FORM_BYTES, html_response, settings_of
from webhook.auth import ADMIN_KEY_LOCKOUT_SECONDS, KeyCheck, check_admin_key, presented_key
from webhook.forms import read_form

COOKIE = "pb_admin"
COOKIE_PATH = "/admin"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"  # the hidden input of every form the page posts
CSRF_HEADER = "x-csrf-token"  # the same token, for a script posting with the session cookie
_SESSION_CONTEXT = b"presence-bridge admin session v1"
_FORM_CONTEXT = b"presence-bridge admin form token v1"


def _mac(admin_key: SecretStr, payload: str, context: bytes = _SESSION_CONTEXT) -> str:
    derived = hmac.new(admin_key.get_secret_value().encode(), context, hashlib.sha256).digest()
    return hmac.new(derived, payload.encode(), hashlib.sha256).hexdigest()


def form_token(admin_key: SecretStr, session: str) -> str:
    """The token the page's forms carry: bound to this session, useless without it."""
    return _mac(admin_key, session, _FORM_CONTEXT)


def page_form_token(request: Request) -> str:
    """The form token of the request's session, "" without one (e.g. the key in a header)."""
    expected = settings_of(request).process.admin_api_key
    session = request.cookies.get(COOKIE)
    if expected is None or not session_valid(session, expected, time.time()):
        return ""
    return form_token(expected, session or "")


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


async def access(request: Request) -> KeyCheck:
    """The admin key in a header (throttled like a login), else a valid session cookie."""
    presented = presented_key(request)
    if presented is not None:
        return await check_admin_key(request, presented)
    expected = settings_of(request).process.admin_api_key
    if session_valid(request.cookies.get(COOKIE), expected, time.time()):
        return KeyCheck.GRANTED
    return KeyCheck.DENIED


async def refusal(request: Request, *, html: bool) -> Response | None:
    """None when the request may use the admin page; else the page's or the API's refusal."""
    check = await access(request)
    if check is KeyCheck.GRANTED:
        return None
    if check is KeyCheck.LOCKED:
        return locked_out(request, html=html)
    if html:
        return login_page(request)
    return unauthorised()


async def post_refusal(request: Request, form: dict[str, str], *, html: bool) -> Response | None:
    """`refusal` for a state-changing POST: a session must also show its form token."""
    if presented_key(request) is not None:
        return await refusal(request, html=html)
    expected = settings_of(request).process.admin_api_key
    session = request.cookies.get(COOKIE)
    if expected is None or not session_valid(session, expected, time.time()):
        if html and expected is not None:
            text = "Your session has ended: sign in again, then press the button again."
            return login_page(request, text)
        return await refusal(request, html=html)
    if _foreign_origin(request):
        return forbidden(request, "This request came from another site.", html=html)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), form_token(expected, session or "").encode()):
        text = "This form did not come from the current status page: reload it and try again."
        return forbidden(request, text, html=html)
    return None


def _foreign_origin(request: Request) -> bool:
    """An Origin naming another host; a missing or "null" one proves nothing either way."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc != request.headers.get("host", "")


def forbidden(request: Request, text: str, *, html: bool) -> Response:
    """A refused POST says why; 401, as a request without valid credentials for the action."""
    if html:
        return html_response(request, "Refused", view.message(text), 401)
    return JSONResponse({"error": text}, 401, headers=HEADERS)


def unauthorised() -> Response:
    return JSONResponse(
        {"error": "unauthorized"}, 401, headers=HEADERS | {"WWW-Authenticate": "Bearer"}
    )


def locked_out(request: Request, *, html: bool) -> Response:
    retry = {"Retry-After": str(ADMIN_KEY_LOCKOUT_SECONDS)}
    if html:
        page = login_page(request, "Too many failed attempts; try again later.", 429)
        page.headers.update(retry)
        return page
    return JSONResponse({"error": "too many failed attempts"}, 429, headers=HEADERS | retry)


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
    check = await check_admin_key(request, form.get("key") or presented_key(request) or "")
    if check is KeyCheck.LOCKED:
        return locked_out(request, html=True)
    if check is KeyCheck.DENIED:
        return login_page(request, "That is not the admin API key.")
    response = RedirectResponse("/admin", 303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        issue_session(expected, time.time()),
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        # The scheme the client used: behind a TLS proxy, its X-Forwarded-Proto (believed from
        # PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS, webhook/app.py) makes it https.
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/admin", 303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
