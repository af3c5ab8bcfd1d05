"""What the admin modules share: settings, response headers, the HTML response."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse

from core.settings import Settings
from webhook.admin import view

MAX_FORM_BYTES = 4096
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def html_response(
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
    tenants = settings_of(request).tenants
    logins = " ".join(sorted({_origin(str(t.login_base_url)) for t in tenants}))
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        f"connect-src 'self'; img-src 'self' data:; form-action 'self' {logins}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    body = view.document(title, main, nonce, live=live, subtitle=subtitle, nav=nav)
    return HTMLResponse(body, status_code, headers=HEADERS | {"Content-Security-Policy": csp})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
