"""POST /graph/notifications and /graph/lifecycle: verify, hand off in one Redis call, 202."""

from __future__ import annotations

import hmac
import logging
import time
from collections import Counter
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from core.state import intake
from core.state.subscriptions import Registration, client_state_digest
from webhook.payload import (
    PayloadError,
    kind_of,
    normalise,
    parse_collection,
    validation_token_ok,
)

log = logging.getLogger("webhook.notifications")


class BodyTooLarge(Exception):
    pass


# Stateless once built (no body, no background task): one instance serves every request.
ACCEPTED = Response(status_code=202)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused early when it is (or grows) larger than `limit`."""
    declared = request.headers.get("content-length")
    # ASCII digits only: "²".isdigit() holds too, and int() refuses it.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:  # ASGI messages straight from the server: no async generator per request
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def handshake(token: str) -> Response:
    if not validation_token_ok(token):
        return PlainTextResponse("invalid validationToken", status_code=400)
    return PlainTextResponse(token, headers={"X-Content-Type-Options": "nosniff"})


def verify(
    items: list[Any],
    records: dict[str, Registration | None],
    tokens: list[str] | None,
) -> tuple[list[intake.Accepted], Counter[str]]:
    """Keep items whose subscription is known and whose clientState matches."""
    accepted: list[intake.Accepted] = []
    counters: Counter[str] = Counter(received=len(items))
    digests: dict[str, bytes] = {}  # a batch repeats its subscriptions' clientState: hash once
    for item in items:
        sid = item.get("subscriptionId") if isinstance(item, dict) else None
        if not isinstance(sid, str):
            counters["dropped:malformed"] += 1
            continue
        record = records.get(sid)
        if record is None:
            counters["dropped:unknown_subscription"] += 1
            continue
        state = item.get("clientState")
        if isinstance(state, str):
            sent = digests.get(state) or digests.setdefault(state, client_state_digest(state))
        else:
            sent = b""
        if not hmac.compare_digest(sent, record.client_state_digest):
            counters["dropped:client_state_mismatch"] += 1
            continue
        rich = "encryptedContent" in item
        accepted.append(
            intake.Accepted(
                tenant=record.tenant,
                kind=kind_of(item),
                item=normalise(item),
                validation_tokens=(tokens or []) if rich else None,
            )
        )
    return accepted, counters


async def receive(request: Request) -> Response:
    # Parsing the query string costs more than the rest of a small request's checks; a
    # notification has none, so look only when there is one.
    token = request.query_params.get("validationToken") if request.scope["query_string"] else None
    if token is not None:
        return handshake(token)  # before the body is touched, as Graph expects
    state = request.app.state
    try:
        body = await read_body(request, state.settings.process.max_body_bytes)
    except BodyTooLarge:
        return JSONResponse({"error": "body too large"}, status_code=413)
    try:
        items, tokens = parse_collection(orjson.loads(body))
    except (orjson.JSONDecodeError, PayloadError) as exc:
        message = str(exc) if isinstance(exc, PayloadError) else "malformed JSON"
        return JSONResponse({"error": message}, status_code=400)
    if not items:
        return ACCEPTED
    ids = {
        i["subscriptionId"]
        for i in items
        if isinstance(i, dict) and isinstance(i.get("subscriptionId"), str)
    }
    started = time.perf_counter()
    try:
        records = await state.lookup.get_many(ids)
        accepted, counters = verify(items, records, tokens)
        try:
            args = intake.script_args(accepted, dict(counters))
        except orjson.JSONEncodeError:
            # JSON nested deeper than the stream's encoder takes (254 levels): never Graph's.
            return JSONResponse({"error": "an item is nested too deeply"}, status_code=400)
        await state.intake.append(args)
    except (RedisError, OSError):
        log.warning("redis unavailable; asking Graph to retry")
        return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
    state.metrics.enqueue_seconds.observe(time.perf_counter() - started)
    dropped = {k: v for k, v in counters.items() if k.startswith("dropped:")}
    if dropped:
        log.info("dropped unverified items", extra={"counts": dropped})
    return ACCEPTED
