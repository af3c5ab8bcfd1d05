"""`/v1.0/users`, `/v1.0/users/{id}`, `/v1.0/users/delta` and `/v1.0/me`, plus the user changes.

Every change to a tenant's users must go through the helpers here (`add_users`,
`update_user`, `soft_delete_user`, `restore_user`, `hard_delete_user`): they hand out the
tenant's next version and append to a change log, which is what delta queries read.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from emulator.tokens import GraphError, authenticate, has_permission, setting
from emulator.world import Tenant, User, World, extension

READ_PERMISSIONS = (
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.ReadBasic.All",
)
MAX_TOP = 999
DEFAULT_TOP = 100
# Graph user properties a client may $select; those the model lacks come back as null.
SELECTABLE = frozenset(
    {
        "id", "userPrincipalName", "displayName", "mail", "mailNickname",
        "onPremisesSamAccountName", "givenName", "surname", "jobTitle", "businessPhones",
        "mobilePhone", "officeLocation", "preferredLanguage", "accountEnabled",
        "department", "employeeId", "onPremisesUserPrincipalName", "proxyAddresses",
    }
)  # fmt: skip
UNSUPPORTED_QUERY = ("$skip", "$orderby", "$expand", "$search", "$filter")
EDITABLE = frozenset(
    {"userPrincipalName", "displayName", "mail", "mailNickname", "onPremisesSamAccountName",
     "password"}
)  # fmt: skip
GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#users"


@dataclass
class UserLog:
    """A tenant's append-only change log, in version order, and its hard deletions."""

    changes: list[tuple[int, str]] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # changes' versions, for bisect
    tombstones: dict[str, int] = field(default_factory=dict)  # user id -> deletion version
    order: list[str] = field(default_factory=list)  # listing order (creation order)
    order_key: tuple[int, int] = (-1, -1)


def _log(world: World, tenant_id: str) -> UserLog:
    logs: dict[str, UserLog] = extension(world, "users.logs", dict)
    return logs.setdefault(tenant_id, UserLog())


def _record(world: World, tenant: Tenant, user_id: str) -> int:
    tenant.version += 1
    log = _log(world, tenant.id)
    log.changes.append((tenant.version, user_id))
    log.versions.append(tenant.version)
    return tenant.version


def add_users(world: World, tenant_id: str, users: Iterable[User]) -> int:
    """Add (or replace) users; returns how many."""
    count = 0
    with world.lock:
        tenant = world.tenant(tenant_id)
        log = _log(world, tenant_id)
        for user in users:
            user.tenant_id = tenant_id
            user.version = _record(world, tenant, user.id)
            tenant.users[user.id] = user
            log.tombstones.pop(user.id, None)
            count += 1
    return count


def _existing(world: World, tenant_id: str, user_id: str) -> tuple[Tenant, User]:
    tenant = world.tenants.get(tenant_id)
    user = tenant.users.get(user_id) if tenant else None
    if tenant is None or user is None:
        raise KeyError(user_id)
    return tenant, user


def update_user(world: World, tenant_id: str, user_id: str, changes: dict[str, Any]) -> User:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    with world.lock:
        tenant, user = _existing(world, tenant_id, user_id)
        for name, value in changes.items():
            setattr(user, name, value)
        user.version = _record(world, tenant, user_id)
        return user


def soft_delete_user(world: World, tenant_id: str, user_id: str) -> None:
    with world.lock:
        tenant, user = _existing(world, tenant_id, user_id)
        user.deleted = True
        user.version = _record(world, tenant, user_id)


def restore_user(world: World, tenant_id: str, user_id: str) -> None:
    with world.lock:
        tenant, user = _existing(world, tenant_id, user_id)
        user.deleted = False
        user.version = _record(world, tenant, user_id)


def hard_delete_user(world: World, tenant_id: str, user_id: str) -> None:
    with world.lock:
        tenant, _ = _existing(world, tenant_id, user_id)
        del tenant.users[user_id]
        _log(world, tenant_id).tombstones[user_id] = _record(world, tenant, user_id)


# --- reading ---------------------------------------------------------------------------------


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode(token: str, *numbers: str) -> dict[str, Any]:
    """A paging or delta token's state; `numbers` are keys that must hold numbers."""
    malformed = GraphError(400, "BadRequest", "The token in the request is malformed.")
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise malformed from None
    if not isinstance(state, dict) or not all(
        isinstance(state.get(key), int | float) for key in numbers
    ):
        raise malformed
    select = state.get("s")
    if select is not None and not (
        isinstance(select, list) and all(name in SELECTABLE for name in select)
    ):
        raise malformed
    return state


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type=GRAPH_JSON)


def _select(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in SELECTABLE:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
            )
    return names


def _user_json(user: User, select: list[str] | None) -> dict[str, Any]:
    body = user.graph_json(select)
    for name in select or ():
        body.setdefault(name, None)
    return body


def _reader(world: World, request: Request) -> Tenant:
    """The caller's tenant, once the token is checked and allows reading users."""
    claims = authenticate(world, request)
    if not has_permission(claims, *READ_PERMISSIONS):
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    tenant = world.tenants.get(str(claims.get("tid")))
    if tenant is None:
        raise GraphError(401, "InvalidAuthenticationToken", "The tenant of the token is unknown.")
    for option in UNSUPPORTED_QUERY:
        if option in request.query_params:
            raise GraphError(
                400, "Request_UnsupportedQuery", f"'{option}' is not supported by the emulator."
            )
    return tenant


def _ordering(world: World, tenant: Tenant) -> list[str]:
    # Rebuilt only when the user set changed: listing pages then cost O(page), not O(users).
    log = _log(world, tenant.id)
    key = (len(tenant.users), tenant.version)
    if log.order_key != key:
        log.order, log.order_key = list(tenant.users), key
    return log.order


def _top(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_TOP
    try:
        top = int(raw)
    except ValueError:
        top = 0
    if not 1 <= top <= MAX_TOP:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    return top


def list_page(world: World, tenant: Tenant, request: Request) -> dict[str, Any]:
    query = request.query_params
    select, top = _select(query.get("$select")), _top(query.get("$top"))
    with world.lock:
        order = _ordering(world, tenant)
        start = 0
        if query.get("$skiptoken"):
            state = _decode(query["$skiptoken"], "o")
            start, anchor = max(0, int(state["o"])), state.get("a")
            if isinstance(anchor, str) and not (
                0 < start <= len(order) and order[start - 1] == anchor
            ):
                # Users were added or removed since the last page: resume after the anchor.
                start = order.index(anchor) + 1 if anchor in tenant.users else start
        value: list[dict[str, Any]] = []
        position = start
        while position < len(order) and len(value) < top:
            user = tenant.users.get(order[position])
            position += 1
            if user is not None and not user.deleted:
                value.append(_user_json(user, select))
    body: dict[str, Any] = {"@odata.context": CONTEXT, "value": value}
    if position < len(order):
        params = {
            "$top": str(top),
            "$skiptoken": _encode({"o": position, "a": order[position - 1]}),
        }
        if select:
            params["$select"] = ",".join(select)
        body["@odata.nextLink"] = f"{_base(request)}/v1.0/users?{urlencode(params)}"
    return body


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _delta_link(request: Request, version: int, now: float, select: list[str] | None) -> str:
    token = _encode({"v": version, "t": now, "s": select})
    return f"{_base(request)}/v1.0/users/delta?{urlencode({'$deltatoken': token})}"


def _fresh_delta_url(request: Request, select: list[str] | None) -> str:
    suffix = f"?{urlencode({'$select': ','.join(select)})}" if select else ""
    return f"{_base(request)}/v1.0/users/delta{suffix}"


def delta_page(world: World, tenant: Tenant, request: Request) -> Response:
    query = request.query_params
    now = world.clock.now()
    with world.lock:
        log = _log(world, tenant.id)
        if query.get("$skiptoken"):
            state = _decode(query["$skiptoken"], "since", "upper", "pos")
            since, upper, position = int(state["since"]), int(state["upper"]), int(state["pos"])
            select = state.get("s")
        elif query.get("$deltatoken") == "latest":
            select = _select(query.get("$select"))
            link = _delta_link(request, tenant.version, now, select)
            return _json({"@odata.context": CONTEXT, "value": [], "@odata.deltaLink": link})
        elif query.get("$deltatoken"):
            state = _decode(query["$deltatoken"], "v", "t")
            select = state.get("s")
            if now - float(state["t"]) > float(setting(world, "delta_token_lifetime")):
                raise GraphError(
                    410,
                    "syncStateNotFound",
                    "The delta token has expired. Start a new sync with the Location URL.",
                    {"Location": _fresh_delta_url(request, select)},
                )
            since, upper = int(state["v"]), tenant.version
            position = bisect.bisect_right(log.versions, since)
        else:
            # A new round: query options count only here; the tokens carry them from now on.
            select, since, upper, position = _select(query.get("$select")), 0, tenant.version, 0
        size = int(setting(world, "delta_page_size"))
        value: list[dict[str, Any]] = []
        while position < len(log.changes) and len(value) < size:
            version, user_id = log.changes[position]
            if version > upper:
                break
            position += 1
            item = _delta_item(tenant, log, version, user_id, select, initial=since == 0)
            if item is not None:
                value.append(item)
        more = position < len(log.changes) and log.changes[position][0] <= upper
    body: dict[str, Any] = {"@odata.context": CONTEXT, "value": value}
    if more:
        token = _encode({"since": since, "upper": upper, "pos": position, "s": select})
        body["@odata.nextLink"] = (
            f"{_base(request)}/v1.0/users/delta?{urlencode({'$skiptoken': token})}"
        )
    else:
        body["@odata.deltaLink"] = _delta_link(request, upper, now, select)
    return _json(body)


def _delta_item(
    tenant: Tenant,
    log: UserLog,
    version: int,
    user_id: str,
    select: list[str] | None,
    *,
    initial: bool,
) -> dict[str, Any] | None:
    """The entry for one change, or None when a later change supersedes it."""
    user = tenant.users.get(user_id)
    if user is not None:
        if user.version != version:
            return None
        if user.deleted:
            # An initial sync lists what exists; removals only make sense against a past state.
            return None if initial else {"id": user_id, "@removed": {"reason": "changed"}}
        return _user_json(user, select)
    if initial or log.tombstones.get(user_id) != version:
        return None
    return {"id": user_id, "@removed": {"reason": "deleted"}}


def routes(world: World) -> list[BaseRoute]:
    async def users(request: Request) -> Response:
        return _json(list_page(world, _reader(world, request), request))

    async def delta(request: Request) -> Response:
        return delta_page(world, _reader(world, request), request)

    async def one_user(request: Request) -> Response:
        tenant = _reader(world, request)
        key = request.path_params["id"]
        with world.lock:
            user = tenant.users.get(key) or next(
                (u for u in tenant.users.values() if u.userPrincipalName.lower() == key.lower()),
                None,
            )
        if user is None or user.deleted:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return _json(
            {
                "@odata.context": f"{CONTEXT}/$entity",
                **_user_json(user, _select(request.query_params.get("$select"))),
            }
        )

    async def me(request: Request) -> Response:
        claims = authenticate(world, request)
        tenant = world.tenants.get(str(claims.get("tid")))
        user = tenant.users.get(str(claims.get("oid"))) if tenant else None
        if claims.get("idtyp") == "app" or user is None or user.deleted:
            raise GraphError(
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )
        select = _select(request.query_params.get("$select"))
        return _json({"@odata.context": f"{CONTEXT}/$entity", **_user_json(user, select)})

    return [
        Route("/v1.0/users", users, methods=["GET"]),
        Route("/v1.0/users/delta", delta, methods=["GET"]),
        Route("/v1.0/users/{id}", one_user, methods=["GET"]),
        Route("/v1.0/me", me, methods=["GET"]),
    ]
