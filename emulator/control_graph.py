"""Control routes for the notification half: presence, subscriptions, deliveries, faults.

All under `/_emulator/`, unauthenticated (the emulator listens on loopback only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulator import aggregation as agg
from emulator import faults, presence, subscriptions
from emulator import lifecycle as sub_lifecycle
from emulator.delivery import engine_for, graph_time
from emulator.world import World

TEAMS_SESSION = "teams:1"


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "BadRequest", "message": message}}, status_code=status)


async def _body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _fail(400, "body is not JSON")
    return body if isinstance(body, dict) else _fail(400, "body must be a JSON object")


def _apply_presence(world: World, change: dict[str, Any]) -> dict[str, Any]:
    """Apply {id, availability, activity, session?, expirationDuration?, preferred?, clear?}."""
    user_id = change.get("id")
    if not isinstance(user_id, str):
        raise ValueError("each change needs the user's id")
    tenant_id = change.get("tenantId") or presence.tenant_of(world, user_id)
    if not isinstance(tenant_id, str):
        raise ValueError(f"user {user_id} is in no tenant")
    session = str(change.get("session", TEAMS_SESSION))
    duration = change.get("expirationDuration")
    if change.get("preferred"):
        if change.get("clear"):
            presence.set_preferred(world, tenant_id, user_id, None, None)
        else:
            pair = agg.checked_pair(
                change.get("availability"), change.get("activity"), agg.PREFERRED_PAIRS
            )
            presence.set_preferred(
                world, tenant_id, user_id, pair, agg.preferred_lifetime(pair, duration)
            )
    elif change.get("clear"):
        presence.clear_session(world, tenant_id, user_id, session)
    else:
        availability, activity = change.get("availability"), change.get("activity")
        if not isinstance(availability, str) or not isinstance(activity, str):
            raise ValueError("availability and activity are required")
        # A Teams client may show anything (InAMeeting, OutOfOffice...): no pair check, no decay,
        # and it lasts until cleared unless a duration is given.
        lifetime = agg.parse_duration(duration) if isinstance(duration, str) else None
        presence.set_session(
            world,
            tenant_id,
            user_id,
            session,
            (agg.canonical(availability), agg.canonical(activity)),
            lifetime,
            decays=not session.startswith("teams:"),
        )
    with world.lock:
        state = world.tenant(tenant_id).presence.get(user_id)
        return presence.presence_json(user_id, state)


def routes(world: World) -> list[BaseRoute]:
    async def set_presence(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        changes = body.get("changes")
        if changes is None:
            # Many users, one state: {"userIds": [...], "availability", "activity", ...}.
            ids = body.get("userIds") or [body.get("id")]
            changes = [{**body, "id": i} for i in ids]
        if not isinstance(changes, list):
            return _fail(400, "changes must be a list")
        try:
            value = [_apply_presence(world, c) for c in changes if isinstance(c, dict)]
        except (ValueError, agg.PresenceRuleError) as exc:
            return _fail(400, str(exc))
        return JSONResponse({"value": value})

    async def get_presence(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        tenant_id = presence.tenant_of(world, user_id)
        if tenant_id is None:
            return _fail(404, f"no user {user_id}")
        now = world.clock.now()
        with world.lock:
            state = world.tenant(tenant_id).presence.get(user_id)
            sessions = [
                {
                    "sessionId": s.session_id,
                    "availability": s.availability,
                    "activity": s.activity,
                    "expiresAt": s.expires_at,
                    "effective": agg.session_state(s, now),
                }
                for s in (state.sessions.values() if state else [])
            ]
            preferred = state.preferred if state else None
            return JSONResponse(
                {
                    **presence.presence_json(user_id, state),
                    "sessions": sessions,
                    "preferred": preferred,
                }
            )

    async def list_subscriptions(request: Request) -> Response:
        now = world.clock.now()
        with world.lock:
            subs = [s for s in world.subscriptions.values() if s.expiration > now]
            value = [
                {
                    **subscriptions.subscription_json(s),
                    "tenantId": s.tenant_id,
                    "userIds": len(s.user_ids),
                    "tokenExpirationDateTime": graph_time(s.token_expires_at),
                }
                for s in subs
            ]
        return JSONResponse({"value": value})

    async def lifecycle(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        event = body.get("lifecycleEvent")
        if event not in sub_lifecycle.LIFECYCLE_EVENTS:
            return _fail(400, f"lifecycleEvent must be one of {sub_lifecycle.LIFECYCLE_EVENTS}")
        sub = sub_lifecycle.live(world, request.path_params["sub_id"])
        if sub is None:
            return _fail(404, "no such subscription")
        sent = sub_lifecycle.send_lifecycle(world, sub, str(event))
        if event == "subscriptionRemoved":
            sub_lifecycle.remove(world, sub)
        return JSONResponse({"sent": sent, "subscriptionId": sub.id})

    async def deliveries(request: Request) -> Response:
        kind = request.query_params.get("kind")
        url = request.query_params.get("url")
        with world.lock:
            rows = [
                {
                    "url": d.url,
                    "kind": d.kind,
                    "attempt": d.attempt,
                    "status": d.status,
                    "sentAt": d.sent_at,
                    "elapsed": d.elapsed,
                    "body": d.body,
                }
                for d in world.deliveries
                if (kind is None or d.kind == kind) and (url is None or d.url == url)
            ]
        engine = engine_for(world)
        return JSONResponse({"value": rows, "dropped": list(engine.dropped)})

    async def clear_deliveries(request: Request) -> Response:
        with world.lock:
            world.deliveries.clear()
        engine_for(world).dropped.clear()
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        engine = engine_for(world)
        with world.lock:
            urls = list(engine.health)
        value = [
            {
                "url": u,
                "state": engine.state(u),
                "delivered": engine.health[u].delivered,
                "failedAttempts": engine.health[u].failed_attempts,
                "dropped": engine.health[u].dropped,
                "delayed": engine.health[u].delayed,
            }
            for u in urls
        ]
        return JSONResponse(
            {"value": value, "busy": engine.busy(), "scheduled": engine.scheduler.pending()}
        )

    async def idle(request: Request) -> Response:
        """Wait (up to `timeout` real seconds) until nothing is queued or in flight."""
        engine = engine_for(world)
        deadline = time.monotonic() + float(request.query_params.get("timeout", "10"))
        while engine.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return JSONResponse({"busy": engine.busy()})

    async def get_faults(request: Request) -> Response:
        state = faults.state(world)
        with world.lock:
            return JSONResponse(
                {
                    "routes": [f.as_json() for f in state.routes],
                    "delivery": [dict(f.__dict__) for f in state.delivery],
                }
            )

    async def add_fault(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            if request.path_params.get("target") == "delivery":
                fault = dict(faults.add_delivery_fault(world, body).__dict__)
            else:
                fault = faults.add_route_fault(world, body).as_json()
        except (ValueError, TypeError) as exc:
            return _fail(400, str(exc))
        return JSONResponse(fault, status_code=201)

    async def clear_faults(request: Request) -> Response:
        faults.clear(world)
        return Response(status_code=204)

    return [
        Route("/_emulator/presence", set_presence, methods=["POST"]),
        Route("/_emulator/presence/{user_id}", get_presence, methods=["GET"]),
        Route("/_emulator/subscriptions", list_subscriptions, methods=["GET"]),
        Route("/_emulator/subscriptions/{sub_id}/lifecycle", lifecycle, methods=["POST"]),
        Route("/_emulator/deliveries", deliveries, methods=["GET"]),
        Route("/_emulator/deliveries", clear_deliveries, methods=["DELETE"]),
        Route("/_emulator/delivery/health", health, methods=["GET"]),
        Route("/_emulator/delivery/idle", idle, methods=["GET"]),
        Route("/_emulator/faults", get_faults, methods=["GET"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/faults/{target:str}", add_fault, methods=["POST"]),
    ]
