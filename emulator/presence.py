"""Presence: Graph's read and write routes, and change notifications when an aggregate changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulator import aggregation as agg
from emulator.delivery import Item, engine_for, graph_time
from emulator.tokens import GraphError, authenticate, has_permission, json_body
from emulator.world import UserPresence, World, extension

MAX_IDS = 650
READ = ("Presence.Read", "Presence.Read.All", "Presence.ReadWrite", "Presence.ReadWrite.All")
WRITE = ("Presence.ReadWrite", "Presence.ReadWrite.All")
PRESENCE_TYPE = "#microsoft.graph.presence"


def sequence_number(sequence: int) -> str:
    # Graph only promises a lexicographically sortable stamp; zero padding makes ours one.
    return f"{sequence:020d}"


def presence_json(user_id: str, presence: UserPresence | None) -> dict[str, Any]:
    if presence is None:
        availability, activity, sequence = "Offline", "Offline", 0
    else:
        availability, activity, sequence = (
            presence.availability,
            presence.activity,
            presence.sequence,
        )
    return {
        "id": user_id,
        "availability": availability,
        "activity": activity,
        "sequenceNumber": sequence_number(sequence),
        "outOfOfficeSettings": {"message": None, "isOutOfOffice": False},
        "statusMessage": None,
    }


def tenant_of(world: World, user_id: str) -> str | None:
    with world.lock:
        for tenant in world.tenants.values():
            if user_id in tenant.users:
                return tenant.id
    return None


def _timers(world: World) -> dict[tuple[str, str], float]:
    return extension(world, "presence.timers", dict)


def refresh(world: World, tenant_id: str, user_id: str) -> bool:
    """Recompute a user's aggregate; on change bump its sequence and notify subscribers."""
    now = world.clock.now()
    with world.lock:
        presence = world.tenant(tenant_id).presence.setdefault(user_id, UserPresence())
        agg.drop_expired(presence, now)
        state = agg.aggregate(presence, now)
        changed = state != (presence.availability, presence.activity)
        if changed:
            presence.availability, presence.activity = state
            presence.sequence += 1
        document = presence_json(user_id, presence)
        due = agg.next_change_at(presence, now)
        timers = _timers(world)
        key = (tenant_id, user_id)
        schedule = due is not None and not (key in timers and now < timers[key] <= due)
        if schedule and due is not None:
            timers[key] = due
    engine = engine_for(world)
    if schedule and due is not None:
        engine.scheduler.at(due, lambda: _on_timer(world, tenant_id, user_id, due))
    if changed:
        notify(world, tenant_id, user_id, document)
    return changed


def settle(world: World, tenant_id: str, user_ids: list[str]) -> None:
    """Bring aggregates up to the clock before a read, so a read never waits on a timer."""
    with world.lock:
        tenant = world.tenants.get(tenant_id)
        known = [u for u in user_ids if tenant is not None and u in tenant.presence]
    for user_id in known:
        refresh(world, tenant_id, user_id)


def _on_timer(world: World, tenant_id: str, user_id: str, due: float) -> None:
    with world.lock:
        timers = _timers(world)
        if timers.get((tenant_id, user_id)) == due:
            del timers[(tenant_id, user_id)]
    refresh(world, tenant_id, user_id)


def notify(world: World, tenant_id: str, user_id: str, document: dict[str, Any]) -> None:
    """Hand one presence change to every live subscription covering the user."""
    engine = engine_for(world)
    now = world.clock.now()
    items: list[Item] = []
    with world.lock:
        for sub_id in engine.index.get(user_id, ()):
            sub = world.subscriptions.get(sub_id)
            if sub is None or sub.expiration <= now or sub.tenant_id != tenant_id:
                continue
            payload: dict[str, Any] = {
                "subscriptionId": sub.id,
                # Presence notifications carry this timestamp without an offset (seen in 2024).
                "subscriptionExpirationDateTime": graph_time(sub.expiration, suffix=""),
                "changeType": "updated",
                "resource": sub.resource.lstrip("/"),
                "resourceData": {
                    "@odata.type": PRESENCE_TYPE,
                    "@odata.id": f"users/{user_id}/presence",
                    "id": user_id,
                },
                "clientState": sub.client_state,
                "tenantId": tenant_id,
                "organizationId": tenant_id,
            }
            item = Item(sub.notification_url, payload, "notification", sub.id, now)
            if sub.include_resource_data:
                item.resource = {
                    "@odata.type": PRESENCE_TYPE,
                    "@odata.id": f"users/{user_id}/presence",
                    **document,
                }
                item.certificate = sub.encryption_certificate
                item.certificate_id = sub.encryption_certificate_id
                item.audience = sub.app_id
                item.tenant_id = tenant_id
            items.append(item)
    for item in items:
        engine.enqueue(item)


# -- operations shared with the control API ---------------------------------------------------


def set_session(
    world: World,
    tenant_id: str,
    user_id: str,
    session_id: str,
    pair: tuple[str, str],
    lifetime: float | None,
    *,
    decays: bool = True,
) -> None:
    now = world.clock.now()
    with world.lock:
        presence = world.tenant(tenant_id).presence.setdefault(user_id, UserPresence())
        presence.sessions[session_id] = agg.AppSession(
            session_id=session_id,
            availability=pair[0],
            activity=pair[1],
            expires_at=None if lifetime is None else now + lifetime,
            set_at=now,
            decays=decays,
        )
    refresh(world, tenant_id, user_id)


def clear_session(world: World, tenant_id: str, user_id: str, session_id: str) -> bool:
    now = world.clock.now()
    with world.lock:
        presence = world.tenant(tenant_id).presence.get(user_id)
        session = presence.sessions.get(session_id) if presence else None
        if presence is None or session is None or agg.session_state(session, now) is None:
            return False
        del presence.sessions[session_id]
    refresh(world, tenant_id, user_id)
    return True


def set_preferred(
    world: World, tenant_id: str, user_id: str, pair: tuple[str, str] | None, lifetime: float | None
) -> None:
    now = world.clock.now()
    with world.lock:
        presence = world.tenant(tenant_id).presence.setdefault(user_id, UserPresence())
        presence.preferred = pair
        presence.preferred_expires_at = None if pair is None or lifetime is None else now + lifetime
    refresh(world, tenant_id, user_id)


# -- routes ------------------------------------------------------------------------------------


def _caller(world: World, request: Request, permissions: tuple[str, ...]) -> dict[str, Any]:
    claims = authenticate(world, request)
    if not has_permission(claims, *permissions):
        raise GraphError(403, "Forbidden", "Insufficient privileges to complete the operation.")
    return claims


def _user(world: World, claims: dict[str, Any], user_id: str) -> tuple[str, str]:
    tenant_id = str(claims.get("tid"))
    with world.lock:
        tenant = world.tenants.get(tenant_id)
        user = tenant.users.get(user_id) if tenant else None
        if user is None:
            # Graph also accepts the UPN in the path.
            for candidate in tenant.users.values() if tenant else ():
                if candidate.userPrincipalName.lower() == user_id.lower():
                    user = candidate
                    break
    if user is None or user.deleted:
        raise GraphError(404, "NotFound", f"User {user_id} was not found.")
    return tenant_id, user.id


def _bad(exc: Exception) -> GraphError:
    return GraphError(400, "BadRequest", str(exc))


def routes(world: World) -> list[BaseRoute]:
    def reader(context: str) -> Callable[[Request], Awaitable[Response]]:
        """A GET endpoint for one user's presence; `context` is the `@odata.context` path."""

        async def endpoint(request: Request) -> Response:
            claims = _caller(world, request, READ)
            tenant_id, user_id = _user(world, claims, request.path_params["user_id"])
            settle(world, tenant_id, [user_id])
            with world.lock:
                presence = world.tenant(tenant_id).presence.get(user_id)
                document = presence_json(user_id, presence)
            base = str(request.base_url).rstrip("/")
            return JSONResponse(
                {"@odata.context": base + context.format(user_id=user_id), **document}
            )

        return endpoint

    async def get_presences_by_user_id(request: Request) -> Response:
        claims = _caller(world, request, READ)
        ids = (await json_body(request)).get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise GraphError(400, "BadRequest", "ids must be a non-empty array of user ids.")
        if len(ids) > MAX_IDS:
            raise GraphError(
                400, "BadRequest", f"The number of ids exceeds the limit of {MAX_IDS}."
            )
        tenant_id = str(claims.get("tid"))
        settle(world, tenant_id, list(dict.fromkeys(ids)))
        value = []
        with world.lock:
            tenant = world.tenants.get(tenant_id)
            for user_id in dict.fromkeys(ids):
                if tenant is None or user_id not in tenant.users:
                    # Our choice for ids Graph cannot resolve: an explicit PresenceUnknown.
                    value.append(
                        {
                            **presence_json(user_id, None),
                            "availability": "PresenceUnknown",
                            "activity": "PresenceUnknown",
                        }
                    )
                else:
                    value.append(presence_json(user_id, tenant.presence.get(user_id)))
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#Collection(microsoft.graph.presence)",
                "value": value,
            }
        )

    async def set_presence(request: Request) -> Response:
        claims = _caller(world, request, WRITE)
        tenant_id, user_id = _user(world, claims, request.path_params["user_id"])
        body = await json_body(request)
        app_id = str(claims.get("appid") or claims.get("azp"))
        if body.get("sessionId") != app_id:
            raise GraphError(
                400, "BadRequest", "The sessionId must be the application id of the caller."
            )
        try:
            pair = agg.checked_pair(
                body.get("availability"), body.get("activity"), agg.SESSION_PAIRS
            )
            lifetime = agg.session_lifetime(body.get("expirationDuration"))
        except agg.PresenceRuleError as exc:
            raise _bad(exc) from None
        set_session(world, tenant_id, user_id, app_id, pair, lifetime)
        return Response(status_code=200)

    async def clear_presence(request: Request) -> Response:
        claims = _caller(world, request, WRITE)
        tenant_id, user_id = _user(world, claims, request.path_params["user_id"])
        session_id = (await json_body(request)).get("sessionId")
        if not isinstance(session_id, str) or not clear_session(
            world, tenant_id, user_id, session_id
        ):
            raise GraphError(404, "NotFound", "The presence session was not found.")
        return Response(status_code=200)

    async def set_user_preferred(request: Request) -> Response:
        claims = _caller(world, request, WRITE)
        tenant_id, user_id = _user(world, claims, request.path_params["user_id"])
        body = await json_body(request)
        try:
            pair = agg.checked_pair(
                body.get("availability"), body.get("activity"), agg.PREFERRED_PAIRS
            )
            lifetime = agg.preferred_lifetime(pair, body.get("expirationDuration"))
        except agg.PresenceRuleError as exc:
            raise _bad(exc) from None
        set_preferred(world, tenant_id, user_id, pair, lifetime)
        return Response(status_code=200)

    async def clear_user_preferred(request: Request) -> Response:
        claims = _caller(world, request, WRITE)
        tenant_id, user_id = _user(world, claims, request.path_params["user_id"])
        set_preferred(world, tenant_id, user_id, None, None)
        return Response(status_code=200)

    base = "/v1.0/users/{user_id}/presence"
    return [
        Route(
            base,
            reader("/v1.0/$metadata#users('{user_id}')/presence/$entity"),
            methods=["GET"],
        ),
        Route(
            "/v1.0/communications/presences/{user_id}",
            reader("/v1.0/$metadata#communications/presences/$entity"),
            methods=["GET"],
        ),
        Route(
            "/v1.0/communications/getPresencesByUserId", get_presences_by_user_id, methods=["POST"]
        ),
        Route(f"{base}/setPresence", set_presence, methods=["POST"]),
        Route(f"{base}/clearPresence", clear_presence, methods=["POST"]),
        Route(f"{base}/setUserPreferredPresence", set_user_preferred, methods=["POST"]),
        Route(f"{base}/clearUserPreferredPresence", clear_user_preferred, methods=["POST"]),
    ]
