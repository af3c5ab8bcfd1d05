"""POST /pbx/events: a PBX reports calls starting and ending, so Teams can show the user busy.

Verified like Standard Webhooks: headers present, timestamp fresh, HMAC-SHA256 over
"{timestamp}.{body}" compared in constant time, then the signature is remembered so a
replay within the window is refused. Accepted events go through the same intake stream.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.state import guards, intake
from webhook.notifications import BodyTooLarge, read_body

TOLERANCE_SECONDS = 300
EVENT_TYPES = {"call_started", "call_ended"}
TIMESTAMP_HEADER = "x-presence-bridge-timestamp"
SIGNATURE_HEADER = "x-presence-bridge-signature"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _parse(body: bytes, tenants: set[str]) -> tuple[str, list[dict[str, Any]]] | str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(payload, dict) or payload.get("tenant") not in tenants:
        return "'tenant' must name a configured tenant"
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        return "'events' must be a non-empty array"
    for event in events:
        if not (
            isinstance(event, dict)
            and event.get("type") in EVENT_TYPES
            and isinstance(event.get("user"), str)
            and isinstance(event.get("call_id"), str)
        ):
            return "each event needs 'type' (call_started|call_ended), 'user' and 'call_id'"
    return str(payload["tenant"]), events


async def receive(request: Request) -> Response:
    state = request.app.state
    secret = state.settings.process.pbx_events_secret
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if secret is None or timestamp is None or signature is None:
        return _error(401, "missing signature")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return _error(401, "timestamp outside the allowed window")
    try:
        body = await read_body(request, state.settings.process.max_body_bytes)
    except BodyTooLarge:
        return _error(413, "body too large")
    expected = sign(secret.get_secret_value().encode(), timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return _error(401, "bad signature")
    parsed = _parse(body, {t.name for t in state.settings.tenants})
    if isinstance(parsed, str):
        return _error(400, parsed)
    tenant, events = parsed
    accepted = [intake.Accepted(tenant=tenant, kind="pbx", item=e) for e in events]
    try:
        # Remembered for the whole timestamp window (both sides of now), so a replay is
        # refused for as long as its timestamp would pass.
        if not await guards.claim_pbx_signature(state.redis, signature, 2 * TOLERANCE_SECONDS):
            return _error(409, "replayed request")
        await state.intake.append(intake.script_args(accepted, {"pbx_events": len(events)}))
    except (RedisError, OSError):
        return _error(503, "temporarily unavailable")
    return Response(status_code=202)


routes = [Route("/pbx/events", receive, methods=["POST"])]
