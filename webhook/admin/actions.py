"""What the page's buttons do: sign a service account in, queue a directory sync."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from core.errors import BridgeError
from core.queue import enqueue_sync_directory
from webhook.admin import view
from webhook.admin._private import HEADERS, MAX_FORM_BYTES, html_response, settings_of
from webhook.admin.sessions import post_refusal
from webhook.forms import read_form
from webhook.oauth import run_sign_in


async def sign_in(request: Request) -> Response:
    """A "Sign in" button: starts the sign-in flow as /oauth/login does; /oauth/callback ends it."""
    form = await read_form(request, MAX_FORM_BYTES)
    if form is None:
        return html_response(request, "Sign-in", view.message("That request is too large."), 413)
    if refused := await post_refusal(request, form, html=True):
        return refused
    tenant, account = form.get("tenant", ""), form.get("account") or None
    settings = settings_of(request)
    if settings.tenant(tenant) is None:
        text = f"Unknown tenant {tenant[:64]!r}."
        return html_response(request, "Sign-in", view.message(text), 404)

    try:
        auth_uri = await run_sign_in(request, lambda auth: auth.start_sign_in(tenant, account))
    except BridgeError as error:
        text = f"The sign-in cannot start: {error}"
        return html_response(request, "Sign-in", view.message(text), error.status_code)
    return RedirectResponse(auth_uri, 303, headers=HEADERS)


async def directory_sync(request: Request) -> Response:
    """On-demand directory sync (`?full=true` for a full import): queued for a worker."""
    form = await read_form(request, MAX_FORM_BYTES)
    if form is None:
        return JSONResponse({"error": "request too large"}, 413, headers=HEADERS)
    if refused := await post_refusal(request, form, html=False):
        return refused
    tenant = request.path_params["tenant"]
    if settings_of(request).tenant(tenant) is None:
        return JSONResponse({"error": "unknown tenant"}, 404, headers=HEADERS)
    full = request.query_params.get("full", "").lower() in ("1", "true", "yes")
    redis = request.app.state.sync_redis

    def enqueue() -> str:
        return str(enqueue_sync_directory(redis, tenant, full).id)

    try:
        job_id = await run_in_threadpool(enqueue)
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, 503, headers=HEADERS)
    return JSONResponse({"queued": job_id, "tenant": tenant, "full": full}, 202, headers=HEADERS)
