"""`/v1.0/subscriptions` with Graph's presence rules (handshake and lifecycle live beside it)."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulator.delivery import engine_for, graph_time
from emulator.handshake import check_url, validate_endpoint
from emulator.lifecycle import (
    LIFECYCLE_EVENTS,
    live,
    reauthorized,
    remove,
    send_lifecycle,
    watch,
)
from emulator.tokens import GraphError, authenticate, has_permission, json_body
from emulator.world import Subscription, World

# Re-exported: control_graph and older callers reach these through this module.
__all__ = [
    "CONFLICT",
    "LIFECYCLE_EVENTS",
    "MAX_PRESENCE_IDS",
    "live",
    "parse_time",
    "presence_ids",
    "reauthorized",
    "remove",
    "routes",
    "send_lifecycle",
    "subscription_json",
    "visible",
    "watch",
]

MAX_PRESENCE_IDS = 650
MAX_LIFETIME = 60 * 60.0  # presence subscriptions live at most 60 minutes...
MIN_LIFETIME = 45 * 60.0  # ...and shorter requests are silently raised to 45
MAX_CLIENT_STATE = 128
PAGE_SIZE = 100
PRESENCE_SCOPES = ("Presence.Read.All", "Presence.ReadWrite.All")
CONFLICT = "A subscripton already exists. It must be deleted before a another can be made."
UPDATABLE = {
    "expirationDateTime",
    "notificationUrl",
    "encryptionCertificate",
    "encryptionCertificateId",
}
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")

_SINGLE = re.compile(r"^/?communications/presences/([^/?()']+)$")
_BULK = re.compile(r"^/?communications/presences\?\$filter=id in \((.*)\)$", re.IGNORECASE)


def _error(status: int, message: str, code: str = "InvalidRequest") -> GraphError:
    return GraphError(status, code, message)


def _extension_error(status: int, reason: str, operation: str = "Create") -> GraphError:
    # Graph wraps subscription-service failures like this (seen in 409 and 403 reports).
    phrase = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}[status]
    return GraphError(
        status,
        "ExtensionError",
        f"Operation: {operation}; Exception: [Status Code: {phrase}; Reason: {reason}]",
    )


def presence_ids(resource: str) -> list[str]:
    """User ids a presence resource covers; ValueError for anything else."""
    text = unquote_plus(resource.strip())
    single = _SINGLE.match(text)
    if single:
        return [single.group(1)]
    bulk = _BULK.match(text)
    if not bulk:
        raise ValueError(f"Unsupported resource '{resource}'.")
    ids = [part.strip().strip("'\"").strip() for part in bulk.group(1).split(",")]
    if not ids or any(not i for i in ids):
        raise ValueError("The $filter must list at least one id.")
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_PRESENCE_IDS:
        raise ValueError(
            f"Too many resources in the filter: {len(ids)}. The maximum is {MAX_PRESENCE_IDS}."
        )
    return ids


def parse_time(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError("expirationDateTime is required.")
    value = text.strip().replace("z", "Z")
    # Graph sends seven fractional digits; Python's parser takes at most six.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def bounded_expiration(world: World, requested: object) -> float:
    """Apply the 60-minute limit (400) and the silent raise to 45 minutes."""
    try:
        when = parse_time(requested)
    except ValueError:
        raise _error(400, "expirationDateTime is not a valid DateTimeOffset.") from None
    now = world.clock.now()
    if when - now > MAX_LIFETIME + 1:  # a second of grace for the client's clock
        raise _error(400, "Subscription expiration can only be 60 minutes in the future.")
    return max(when, now + MIN_LIFETIME)


def check_certificate(encoded: object) -> None:
    try:
        der = base64.b64decode(str(encoded), validate=True)
        key = x509.load_der_x509_certificate(der).public_key()
    except (binascii.Error, ValueError):
        raise _error(400, "encryptionCertificate is not a base64 X.509 certificate.") from None
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise _error(400, "encryptionCertificate must hold a 2048 to 4096 bit RSA key.")


def subscription_json(sub: Subscription, *, with_client_state: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.app_id,
        "changeType": sub.change_type,
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": sub.lifecycle_notification_url,
        "expirationDateTime": graph_time(sub.expiration),
        "creatorId": sub.creator_id,
        "includeResourceData": sub.include_resource_data,
        "latestSupportedTlsVersion": sub.latest_supported_tls_version,
        "encryptionCertificate": sub.encryption_certificate,
        "encryptionCertificateId": sub.encryption_certificate_id,
        "notificationUrlAppId": None,
        "notificationContentType": "application/json",
    }
    if not with_client_state:
        document.pop("clientState")  # List subscriptions never returns it
    return document


def visible(sub: Subscription, claims: dict[str, Any]) -> bool:
    """Delegated callers see their own user's subscriptions of this app; app-only, the app's."""
    app_id = claims.get("appid") or claims.get("azp")
    if sub.app_id != app_id or sub.tenant_id != claims.get("tid"):
        return False
    return "scp" not in claims or sub.creator_id == claims.get("oid")


# -- routes --------------------------------------------------------------------------------------


def _new_subscription(world: World, claims: dict[str, Any], body: dict[str, Any]) -> Subscription:
    """Check everything that needs no network; raise Graph's error for the first problem."""
    resource = body.get("resource")
    if not isinstance(resource, str):
        raise _error(400, "resource is required.")
    try:
        user_ids = presence_ids(resource)
    except ValueError as exc:
        raise _error(400, str(exc)) from None
    if "scp" not in claims:
        raise _extension_error(
            403, "Operation not supported with application permissions. Use delegated permissions."
        )
    if not has_permission(claims, *PRESENCE_SCOPES):
        raise _extension_error(403, "The caller does not have Presence.Read.All permission.")
    if body.get("changeType") != "updated":
        raise _error(400, "Presence subscriptions support only the 'updated' changeType.")
    client_state = body.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise _error(400, f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
    notification_url = check_url(body.get("notificationUrl"), "notificationUrl")
    lifecycle_url = body.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = check_url(lifecycle_url, "lifecycleNotificationUrl")
    include = body.get("includeResourceData") is True
    certificate = body.get("encryptionCertificate")
    certificate_id = body.get("encryptionCertificateId")
    if include:
        if not certificate or not certificate_id:
            raise _error(
                400,
                "encryptionCertificate and encryptionCertificateId are required "
                "when includeResourceData is true.",
            )
        check_certificate(certificate)
        if not isinstance(certificate_id, str) or len(certificate_id) > 128:
            raise _error(400, "encryptionCertificateId must be at most 128 characters.")
    tls = body.get("latestSupportedTlsVersion", "v1_2")
    if tls not in TLS_VERSIONS:
        raise _error(400, "latestSupportedTlsVersion is not valid.")
    expiration = bounded_expiration(world, body.get("expirationDateTime"))
    return Subscription(
        id=str(uuid.uuid4()),
        tenant_id=str(claims["tid"]),
        app_id=str(claims.get("appid") or claims.get("azp")),
        creator_id=str(claims["oid"]),
        resource=resource,
        user_ids=user_ids,
        change_type="updated",
        notification_url=notification_url,
        lifecycle_notification_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        include_resource_data=include,
        encryption_certificate=certificate if include or certificate else None,
        encryption_certificate_id=certificate_id if include or certificate_id else None,
        latest_supported_tls_version=str(tls),
        token_expires_at=float(claims.get("exp", 0)),
    )


def _conflict(world: World, sub: Subscription) -> bool:
    now = world.clock.now()
    return any(
        other.app_id == sub.app_id
        and other.creator_id == sub.creator_id
        and other.tenant_id == sub.tenant_id
        and other.expiration > now
        for other in world.subscriptions.values()
    )


def routes(world: World) -> list[BaseRoute]:
    async def create(request: Request) -> Response:
        claims = authenticate(world, request)
        sub = _new_subscription(world, claims, await json_body(request))
        with world.lock:
            if _conflict(world, sub):
                raise _extension_error(409, CONFLICT)
        urls = [sub.notification_url]
        if sub.lifecycle_notification_url is not None:
            urls.append(sub.lifecycle_notification_url)  # validated too, even when equal
        for url in urls:
            if not await validate_endpoint(world, url):
                raise _error(
                    400,
                    "Subscription validation request failed. Notification "
                    "endpoint must respond with 200 OK to validation request.",
                )
        engine = engine_for(world)
        with world.lock:
            if _conflict(world, sub):  # another create won while we were validating
                raise _extension_error(409, CONFLICT)
            world.subscriptions[sub.id] = sub
            for user_id in sub.user_ids:
                engine.index.setdefault(user_id, set()).add(sub.id)
        watch(world, sub)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#subscriptions/$entity",
                **subscription_json(sub),
            },
            status_code=201,
        )

    async def list_all(request: Request) -> Response:
        claims = authenticate(world, request)
        size = int(world.settings.get("subscriptions_page_size", PAGE_SIZE))
        try:
            start = int(request.query_params.get("$skiptoken", "0"))
        except ValueError:
            raise _error(400, "The $skiptoken is not valid.") from None
        now = world.clock.now()
        with world.lock:
            mine = sorted(
                (
                    s
                    for s in world.subscriptions.values()
                    if s.expiration > now and visible(s, claims)
                ),
                key=lambda s: s.id,
            )
        page = mine[start : start + size]
        base = str(request.base_url).rstrip("/")
        document: dict[str, Any] = {
            "@odata.context": f"{base}/v1.0/$metadata#subscriptions",
            "value": [subscription_json(s, with_client_state=False) for s in page],
        }
        if start + size < len(mine):
            document["@odata.nextLink"] = f"{base}/v1.0/subscriptions?$skiptoken={start + size}"
        return JSONResponse(document)

    def _find(request: Request, claims: dict[str, Any], operation: str) -> Subscription:
        sub_id = request.path_params["sub_id"]
        sub = live(world, sub_id)
        if sub is None or not visible(sub, claims):
            raise _extension_error(404, f"The object '{sub_id}' doesn't exist.", operation)
        return sub

    async def get_one(request: Request) -> Response:
        claims = authenticate(world, request)
        sub = _find(request, claims, "Get")
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#subscriptions/$entity",
                **subscription_json(sub),
            }
        )

    async def update(request: Request) -> Response:
        claims = authenticate(world, request)
        sub = _find(request, claims, "Update")
        body = await json_body(request)
        if "lifecycleNotificationUrl" in body:
            raise _error(
                400,
                "lifecycleNotificationUrl cannot be added or changed by an update; "
                "delete the subscription and create a new one.",
            )
        unknown = set(body) - UPDATABLE
        if unknown or not body:
            raise _error(400, f"Only {', '.join(sorted(UPDATABLE))} can be updated.")
        expiration = sub.expiration
        if "expirationDateTime" in body:
            expiration = bounded_expiration(world, body["expirationDateTime"])
        url = sub.notification_url
        if "notificationUrl" in body:
            url = check_url(body["notificationUrl"], "notificationUrl")
            if not await validate_endpoint(world, url):
                raise _error(400, "Subscription validation request failed.")
        certificate = body.get("encryptionCertificate", sub.encryption_certificate)
        certificate_id = body.get("encryptionCertificateId", sub.encryption_certificate_id)
        if "encryptionCertificate" in body:
            check_certificate(certificate)
        if sub.include_resource_data and (not certificate or not certificate_id):
            raise _error(400, "encryptionCertificate and encryptionCertificateId are required.")
        with world.lock:
            sub.expiration, sub.notification_url = expiration, url
            sub.encryption_certificate, sub.encryption_certificate_id = certificate, certificate_id
        reauthorized(world, sub, claims)  # renewing also refreshes the subscription's token
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#subscriptions/$entity",
                **subscription_json(sub),
            }
        )

    async def delete(request: Request) -> Response:
        claims = authenticate(world, request)
        remove(world, _find(request, claims, "Delete"))
        return Response(status_code=204)

    async def reauthorize(request: Request) -> Response:
        claims = authenticate(world, request)
        sub = _find(request, claims, "Reauthorize")
        reauthorized(world, sub, claims)
        return Response(status_code=204)

    return [
        Route("/v1.0/subscriptions", create, methods=["POST"]),
        Route("/v1.0/subscriptions", list_all, methods=["GET"]),
        Route("/v1.0/subscriptions/{sub_id}", get_one, methods=["GET"]),
        Route("/v1.0/subscriptions/{sub_id}", update, methods=["PATCH"]),
        Route("/v1.0/subscriptions/{sub_id}", delete, methods=["DELETE"]),
        Route("/v1.0/subscriptions/{sub_id}/reauthorize", reauthorize, methods=["POST"]),
    ]
