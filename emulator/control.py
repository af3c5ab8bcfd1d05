"""The control API under `/_emulator/` (no auth: loopback only); its client is `ControlClient`.

Other modules add their own control routes the same way: `routes(world)` returning
`/_emulator/...` routes, collected by `emulator.app.create_app`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from emulator import delivery, entra, users
from emulator.control_client import PREFIX, ControlClient
from emulator.tokens import DEFAULT_SETTINGS
from emulator.world import App, User, World

__all__ = ["PREFIX", "ControlClient", "routes"]  # ControlClient's historic home is here
USER_FIELDS = (
    "id",
    "userPrincipalName",
    "displayName",
    "mail",
    "mailNickname",
    "onPremisesSamAccountName",
    "password",
)


class ControlError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ControlError("body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


def _thumbprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _user(spec: Any, tenant_id: str) -> User:
    if not isinstance(spec, dict) or not spec.get("userPrincipalName"):
        raise ControlError("each user needs a userPrincipalName")
    unknown = set(spec) - set(USER_FIELDS)
    if unknown:
        raise ControlError(f"unknown user fields: {', '.join(sorted(unknown))}")
    fields = {k: spec[k] for k in USER_FIELDS if k in spec}
    fields.setdefault("id", str(uuid.uuid4()))
    return User(tenant_id=tenant_id, **fields)


def _generated(body: dict[str, Any], tenant_id: str) -> list[User]:
    count, start = int(body["count"]), int(body.get("start", 0))
    prefix, domain = str(body.get("prefix", "user")), str(body.get("domain", "contoso.test"))
    if not 0 < count <= 1_000_000:
        raise ControlError("count must be between 1 and 1000000")
    seeded = []
    for n in range(start, start + count):
        name = f"{prefix}{n:06d}"
        seeded.append(
            User(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                userPrincipalName=f"{name}@{domain}",
                displayName=f"{prefix.title()} {n:06d}",
                mail=f"{name}@{domain}",
                mailNickname=name,
                onPremisesSamAccountName=name,
            )
        )
    return seeded


def routes(world: World) -> list[BaseRoute]:
    def handled(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                result: Response = await handler(request)
            except ControlError as error:
                return _json({"error": str(error)}, error.status)
            except KeyError as error:
                return _json({"error": f"not found: {error.args[0]}"}, 404)
            except (TypeError, ValueError) as error:
                return _json({"error": str(error)}, 400)
            return result

        return endpoint

    def tenant_of(request: Request) -> str:
        tenant_id: str = request.path_params["tid"]
        if tenant_id not in world.tenants:
            raise KeyError(tenant_id)
        return tenant_id

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def add_tenant(request: Request) -> Response:
        tenant_id = str((await _body(request)).get("id") or uuid.uuid4())
        with world.lock:
            world.tenant(tenant_id)
        return _json({"id": tenant_id}, 201)

    async def list_tenants(request: Request) -> Response:
        with world.lock:
            value = [
                {"id": t.id, "apps": sorted(t.apps), "users": len(t.users)}
                for t in world.tenants.values()
            ]
        return _json({"value": value})

    async def add_app(request: Request) -> Response:
        tenant_id, body = tenant_of(request), await _body(request)
        pems = list(body.get("certificates", []))
        if body.get("certificate"):
            pems.append(body["certificate"])
        certificates = {_thumbprint(p.encode()): p.encode() for p in pems}
        app = App(
            client_id=str(body.get("client_id") or uuid.uuid4()),
            tenant_id=tenant_id,
            secret=body.get("secret"),
            certificate_thumbprints=certificates,
            redirect_uris=list(body.get("redirect_uris", [])),
            roles=list(body.get("roles", [])),
        )
        with world.lock:
            world.tenants[tenant_id].apps[app.client_id] = app
        return _json({"client_id": app.client_id, "thumbprints": sorted(certificates)}, 201)

    async def add_users(request: Request) -> Response:
        tenant_id, body = tenant_of(request), await _body(request)
        if "count" in body:
            seeded = _generated(body, tenant_id)
        else:
            seeded = [_user(spec, tenant_id) for spec in body.get("users", [])]
        created = users.add_users(world, tenant_id, seeded)
        return _json({"created": created, "ids": [u.id for u in seeded]}, 201)

    async def add_service_account(request: Request) -> Response:
        tenant_id, body = tenant_of(request), await _body(request)
        if not body.get("password"):
            raise ControlError("a service account needs a password")
        account = _user(body, tenant_id)
        users.add_users(world, tenant_id, [account])
        return _json(account.graph_json(["mailNickname"]), 201)

    async def change_user(request: Request) -> Response:
        tenant_id, user_id = tenant_of(request), request.path_params["uid"]
        if request.method == "DELETE":
            if request.query_params.get("permanent") == "true":
                users.hard_delete_user(world, tenant_id, user_id)
            else:
                users.soft_delete_user(world, tenant_id, user_id)
            return Response(status_code=204)
        user = users.update_user(world, tenant_id, user_id, await _body(request))
        return _json(user.graph_json(["mailNickname", "onPremisesSamAccountName"]))

    async def user_action(request: Request) -> Response:
        tenant_id, user_id = tenant_of(request), request.path_params["uid"]
        if user_id not in world.tenants[tenant_id].users:
            raise KeyError(user_id)
        action = request.path_params["action"]
        if action == "restore":
            users.restore_user(world, tenant_id, user_id)
        elif action == "revoke":
            entra.revoke_user(world, user_id)
        elif action == "require-interaction":
            reason = str((await _body(request)).get("reason", "interaction_required"))
            entra.require_interaction(world, user_id, reason)
        else:
            raise KeyError(action)
        return Response(status_code=204)

    async def tokens(request: Request) -> Response:
        filters = {
            claim: request.query_params[param]
            for param, claim in (("tenant_id", "tid"), ("app_id", "appid"), ("user_id", "oid"))
            if param in request.query_params
        }
        with world.lock:
            value = [
                c for c in world.tokens_issued if all(c.get(k) == v for k, v in filters.items())
            ]
        return _json({"value": value})

    def clock_view() -> dict[str, Any]:
        return {"now": world.clock.now(), "utc": world.clock.utcnow().isoformat()}

    async def clock(request: Request) -> Response:
        return _json(clock_view())

    async def advance(request: Request) -> Response:
        seconds = float((await _body(request)).get("seconds", 0))
        if seconds < 0:
            raise ControlError("the clock only moves forward")
        world.clock.advance(seconds)
        return _json(clock_view())

    async def settings(request: Request) -> Response:
        if request.method == "PATCH":
            changes = await _body(request)
            for key, value in changes.items():
                if not isinstance(value, int | float | str | bool):
                    raise ControlError(f"setting {key} needs a number, string or boolean")
            with world.lock:
                world.settings.update(changes)
        with world.lock:
            return _json({**DEFAULT_SETTINGS, **delivery.DEFAULTS, **world.settings})

    async def callback(request: Request) -> Response:
        # A landing page for sign-in redirects, so a plain HTTP client can finish the flow.
        fields = dict(request.query_params)
        if request.method == "POST":  # response_mode=form_post
            fields.update(parse_qsl((await request.body()).decode("utf-8", "replace")))
        return _json({"query": fields})

    table: list[tuple[str, Any, list[str]]] = [
        ("/health", health, ["GET"]),
        ("/tenants", add_tenant, ["POST"]),
        ("/tenants", list_tenants, ["GET"]),
        ("/tenants/{tid}/apps", add_app, ["POST"]),
        ("/tenants/{tid}/users", add_users, ["POST"]),
        ("/tenants/{tid}/service-accounts", add_service_account, ["POST"]),
        ("/tenants/{tid}/users/{uid}", change_user, ["PATCH", "DELETE"]),
        ("/tenants/{tid}/users/{uid}/{action}", user_action, ["POST"]),
        ("/tokens", tokens, ["GET"]),
        ("/clock", clock, ["GET"]),
        ("/clock/advance", advance, ["POST"]),
        ("/settings", settings, ["GET", "PATCH"]),
        ("/callback", callback, ["GET", "POST"]),
    ]
    return [Route(PREFIX + path, handled(fn), methods=methods) for path, fn, methods in table]
