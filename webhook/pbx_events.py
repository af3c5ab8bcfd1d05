"""POST /pbx/events: a PBX reports calls starting and ending, so Teams can show the user busy.

Signed per Standard Webhooks (`core/standard_webhooks.py`), cheapest check first: the three
headers, the timestamp's freshness, then the signature over the raw body against every
configured key. A tenant's own secrets (PRESENCE_BRIDGE_TENANT_<NAME>_PBX_EVENTS_SECRET) sign
only that tenant's events; the bridge-wide PRESENCE_BRIDGE_PBX_EVENTS_SECRET (deprecated) only
those of tenants without their own. The tenant named in the verified body scopes the replay
guard on `webhook-id`. Accepted events go through the same intake stream as Graph's.

Until the next release, a request that carries only the old `X-Presence-Bridge-Signature` is
still verified the old way when `PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import standard_webhooks
from core.settings import ProcessSettings, Settings
from core.standard_webhooks import Keyring, SignatureError, Signer
from core.state import guards, intake
from webhook.notifications import BodyTooLarge, read_body

EVENT_TYPES = {"call_started", "call_ended"}
# An id is remembered for the whole timestamp window (both sides of now): once it lapses, a
# replay of that message would be stale too.
REPLAY_WINDOW_SECONDS = 2 * standard_webhooks.TOLERANCE_SECONDS
# The scheme before Standard Webhooks (deprecated; removed in the next release).
LEGACY_TOLERANCE_SECONDS = 300
LEGACY_TIMESTAMP_HEADER = "x-presence-bridge-timestamp"
LEGACY_SIGNATURE_HEADER = "x-presence-bridge-signature"
LEGACY_HINT = "X-Presence-Bridge-Signature is no longer accepted: sign per Standard Webhooks"
OLDER_KEY_COUNTER = "pbx_events_previous_secret"
SHARED_KEY_COUNTER = "pbx_events_shared_secret"
EVENT_FIELDS = ("type", "user", "call_id")
MAX_FIELD_LENGTH = 256
UNKNOWN_TENANT = "'tenant' must name a configured tenant"
NOT_YOURS = "the secret that signed this request does not sign events of the tenant it names"


def keyring(settings: Settings) -> Keyring:
    """Each tenant's own keys, then the bridge-wide ones (owner None)."""
    owned: list[tuple[str | None, str]] = [
        (t.name, t.pbx_events_secret.get_secret_value())
        for t in settings.tenants
        if t.pbx_events_secret is not None
    ]
    shared = settings.process.pbx_events_secret
    if shared is not None:
        owned.append((None, shared.get_secret_value()))
    return Keyring.of(owned)


def own_key_tenants(settings: Settings) -> frozenset[str]:
    """Tenants with their own secrets: a shared secret never signs for them."""
    return frozenset(t.name for t in settings.tenants if t.pbx_events_secret is not None)


def legacy_sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The old `X-Presence-Bridge-Signature`: `v1=` + hex HMAC-SHA256 of "{timestamp}.{body}"."""
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _parse(body: bytes) -> tuple[str, list[dict[str, Any]]] | str:
    """The tenant named (not yet checked against the signer) and the events, or what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(payload, dict):
        return "expected a JSON object with 'tenant' and 'events'"
    tenant = payload.get("tenant")
    if not isinstance(tenant, str):
        return UNKNOWN_TENANT
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        return "'events' must be a non-empty array"
    kept: list[dict[str, Any]] = []
    for event in events:
        if not (
            isinstance(event, dict)
            and isinstance(event.get("type"), str)
            and event["type"] in EVENT_TYPES
            and _short_text(event.get("user"))
            and _short_text(event.get("call_id"))
        ):
            return (
                "each event needs 'type' (call_started|call_ended), 'user' and 'call_id' "
                f"(strings of 1 to {MAX_FIELD_LENGTH} characters)"
            )
        # Only what the workers read travels on: nothing else of a sender's JSON is stored.
        kept.append({name: event[name] for name in EVENT_FIELDS})
    return tenant, kept


def _short_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_FIELD_LENGTH


def _signed_for(signers: list[Signer], tenant: str, state: Any) -> Signer | Response:
    """The signer that may sign for `tenant`: its own key, or a shared one if it has none.

    A tenant's key learns nothing of other tenants: one it does not sign for, configured or
    not, gets the same 401.
    """
    configured = state.settings.tenant(tenant) is not None
    for signer in signers:
        if signer.owner == tenant:
            return signer
        if signer.owner is None and configured and tenant not in state.pbx_own_key_tenants:
            return signer
    if not configured and any(s.owner is None for s in signers):
        return _error(400, UNKNOWN_TENANT)
    return _error(401, NOT_YOURS)


def _uses_legacy(request: Request, process: ProcessSettings) -> bool:
    headers = request.headers
    return (
        process.pbx_events_legacy_secret is not None
        and standard_webhooks.SIGNATURE_HEADER not in headers
        and LEGACY_SIGNATURE_HEADER in headers
    )


async def receive(request: Request) -> Response:
    state = request.app.state
    process: ProcessSettings = state.settings.process
    if _uses_legacy(request, process):
        return await _receive_legacy(request)
    ring: Keyring = state.pbx_keyring
    if not ring.keys:
        return _error(401, "no Standard Webhooks secret is configured for /pbx/events")
    try:
        signed = standard_webhooks.read_headers(request.headers.items(), time.time())
    except SignatureError as exc:
        if LEGACY_SIGNATURE_HEADER in request.headers:
            return _error(401, f"{exc} ({LEGACY_HINT})")
        return _error(401, str(exc))
    try:
        body = await read_body(request, process.max_body_bytes)
    except BodyTooLarge:
        return _error(413, "body too large")
    try:
        signers = ring.signers(signed, body)
    except SignatureError as exc:
        return _error(401, str(exc))
    parsed = _parse(body)
    if isinstance(parsed, str):
        return _error(400, parsed)
    tenant, events = parsed
    signer = _signed_for(signers, tenant, state)
    if isinstance(signer, Response):
        return signer
    digest = hashlib.sha256(body).hexdigest()
    accepted = [intake.Accepted(tenant=tenant, kind="pbx", item=e) for e in events]
    counters = {
        "pbx_events": len(events),
        OLDER_KEY_COUNTER: int(signer.position > 0),
        SHARED_KEY_COUNTER: int(signer.owner is None),
    }
    try:
        first = await guards.claim_pbx_webhook_id(
            state.redis, tenant, signed.msg_id, digest, REPLAY_WINDOW_SECONDS
        )
        if first is not None:
            return _repeated(first == digest)
        try:
            await state.intake.append(intake.script_args(accepted, counters))
        except (RedisError, OSError):
            with contextlib.suppress(RedisError, OSError):
                await guards.forget_pbx_webhook_id(state.redis, tenant, signed.msg_id)
            raise
    except (RedisError, OSError):
        return _error(503, "temporarily unavailable")
    return Response(status_code=202)


def _repeated(same_body: bool) -> Response:
    if same_body:
        # The spec makes webhook-id an idempotency key: a sender retrying a message we took in
        # (its answer lost) is told it arrived, so it stops; nothing is queued twice.
        return JSONResponse({"duplicate": True}, status_code=200)
    return _error(409, "webhook-id already used for another body: give each message its own id")


async def _receive_legacy(request: Request) -> Response:
    state = request.app.state
    secret = state.settings.process.pbx_events_legacy_secret
    timestamp = request.headers.get(LEGACY_TIMESTAMP_HEADER)
    signature = request.headers.get(LEGACY_SIGNATURE_HEADER)
    if secret is None or timestamp is None or signature is None:
        return _error(401, "missing signature")
    # ASCII digits only, and short: "²".isdigit() holds and a 5,000-digit number overflows.
    if not standard_webhooks.is_unix_seconds(timestamp):
        return _error(401, "timestamp must be integer Unix seconds")
    if abs(time.time() - int(timestamp)) > LEGACY_TOLERANCE_SECONDS:
        return _error(401, "timestamp outside the allowed window")
    try:
        body = await read_body(request, state.settings.process.max_body_bytes)
    except BodyTooLarge:
        return _error(413, "body too large")
    expected = legacy_sign(secret.get_secret_value().encode(), timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return _error(401, "bad signature")
    parsed = _parse(body)
    if isinstance(parsed, str):
        return _error(400, parsed)
    tenant, events = parsed
    shared = _signed_for([Signer(None, 0)], tenant, state)  # the legacy secret is shared
    if isinstance(shared, Response):
        return shared
    accepted = [intake.Accepted(tenant=tenant, kind="pbx", item=e) for e in events]
    counters = {"pbx_events": len(events), "pbx_events_legacy": len(events)}
    try:
        # Remembered for the whole timestamp window (both sides of now), so a replay is
        # refused for as long as its timestamp would pass.
        window = 2 * LEGACY_TOLERANCE_SECONDS
        if not await guards.claim_pbx_signature(state.redis, signature, window):
            return _error(409, "replayed request")
        await state.intake.append(intake.script_args(accepted, counters))
    except (RedisError, OSError):
        return _error(503, "temporarily unavailable")
    return Response(status_code=202)


routes = [Route("/pbx/events", receive, methods=["POST"])]
