"""`GET /admin` (the status page) and `GET /admin/api/status` (its model as JSON)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.status.page import page_model
from webhook.admin import view
from webhook.admin._private import HEADERS, html_response, settings_of
from webhook.admin.sessions import page_form_token, refusal


async def page_html(request: Request) -> Response:
    if refused := await refusal(request, html=True):
        return refused
    try:
        data = await _read_model(request)
    except (RedisError, OSError):
        text = "Redis is not reachable; try again soon."
        return html_response(request, "Status", view.message(text), 503)
    nav = '<span id="live" class="live">connecting</span><a href="/admin/logout">Sign out</a>'
    return html_response(
        request,
        "Status",
        view.status_main(data, page_form_token(request)),
        live=True,
        nav=nav,
        subtitle=view.esc("as of " + view.clock(data["generated_at"])),
    )


async def page_json(request: Request) -> Response:
    if refused := await refusal(request, html=False):
        return refused
    try:
        data = await _read_model(request)
    except (RedisError, OSError):
        return JSONResponse({"error": "temporarily unavailable"}, 503, headers=HEADERS)
    return Response(orjson.dumps(data), media_type="application/json", headers=HEADERS)


async def _read_model(request: Request) -> dict[str, Any]:
    redis = request.app.state.sync_redis
    return await run_in_threadpool(page_model, redis, settings_of(request), time.time())
