"""The token endpoint's grants: client_credentials, authorization_code (PKCE), refresh_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson

from emulator.entra import (
    DEFAULT_DELEGATED_SCOPES,
    INTERACTION_REASONS,
    RESERVED_SCOPES,
    EntraError,
    b64url,
    graph_scope,
    identity_state,
)
from emulator.tokens import issue_access_token, issuer, setting, sign_jwt
from emulator.world import App, Tenant, World

GRAPH_DEFAULT_SCOPES = frozenset(
    {"https://graph.microsoft.com/.default", "00000003-0000-0000-c000-000000000000/.default"}
)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid_grant(code: int, description: str, suberror: str | None = None) -> EntraError:
    return EntraError(400, "invalid_grant", code, description, suberror)


def client_credentials(
    world: World, tenant: Tenant, app: App, form: dict[str, str]
) -> dict[str, Any]:
    scopes = form.get("scope", "").split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {form.get('scope', '')} is not valid. Client credential "
            "flows must have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    if scopes[0] not in GRAPH_DEFAULT_SCOPES:
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {scopes[0][: -len('/.default')]} was not found in the "
            f"tenant named {tenant.id}.",
        )
    ttl = int(setting(world, "access_token_lifetime"))
    token = issue_access_token(
        world, tenant_id=tenant.id, app_id=app.client_id, user_id=None, roles=list(app.roles)
    )
    return {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token}


def client_info(user_id: str, tenant_id: str) -> str:
    return b64url(orjson.dumps({"uid": user_id, "utid": tenant_id}))


def _id_token(world: World, tenant: Tenant, app: App, user_id: str, nonce: str | None) -> str:
    now = int(world.clock.now())
    user = tenant.users.get(user_id)
    # Entra's `sub` is pairwise: stable per (user, app), unlike `oid`.
    sub = b64url(hashlib.sha256(f"{user_id}:{app.client_id}".encode()).digest())
    claims: dict[str, Any] = {
        "aud": app.client_id,
        "iss": issuer(world, tenant.id),
        "iat": now,
        "nbf": now,
        "exp": now + int(setting(world, "id_token_lifetime")),
        "name": user.displayName if user else "",
        "oid": user_id,
        "preferred_username": user.userPrincipalName if user else "",
        "sub": sub,
        "tid": tenant.id,
        "ver": "2.0",
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return sign_jwt(world, claims)


def user_tokens(
    world: World,
    tenant: Tenant,
    app: App,
    user_id: str,
    requested: list[str],
    nonce: str | None = None,
) -> dict[str, Any]:
    """The token response of a delegated grant: access, refresh (offline_access), id (openid)."""
    lowered = {s.lower() for s in requested}
    resource = [s for s in requested if s.lower() not in RESERVED_SCOPES]
    if any(s in GRAPH_DEFAULT_SCOPES for s in resource):
        resource = list(DEFAULT_DELEGATED_SCOPES)
    resource = resource or ["User.Read"]
    ttl = int(setting(world, "access_token_lifetime"))
    token = issue_access_token(
        world,
        tenant_id=tenant.id,
        app_id=app.client_id,
        user_id=user_id,
        scopes=[graph_scope(s) for s in resource],
    )
    oidc = [s for s in ("openid", "profile", "email") if "openid" in lowered]
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(resource + oidc),
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": token,
        "client_info": client_info(user_id, tenant.id),
    }
    if "offline_access" in lowered:
        refresh = secrets.token_urlsafe(48)
        with world.lock:
            world.refresh_tokens[refresh] = {
                "tenant_id": tenant.id,
                "app_id": app.client_id,
                "user_id": user_id,
                "scopes": list(requested),
                "issued_at": world.clock.now(),
            }
        body["refresh_token"] = refresh
    if "openid" in lowered:
        body["id_token"] = _id_token(world, tenant, app, user_id, nonce)
    return body


def _pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "plain":
        return hmac.compare_digest(verifier, challenge)
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return hmac.compare_digest(digest.decode(), challenge)


def authorization_code(
    world: World, tenant: Tenant, app: App, form: dict[str, str]
) -> dict[str, Any]:
    with world.lock:
        # Codes are single use: take it out whatever happens next.
        code = identity_state(world).codes.pop(form.get("code", ""), None)
    if code is None or code.client_id != app.client_id or code.tenant_id != tenant.id:
        raise _invalid_grant(
            70000, "Provided grant is invalid or malformed, or the code was already redeemed."
        )
    if world.clock.now() > code.expires_at:
        raise _invalid_grant(70008, "The provided authorization code or refresh token has expired.")
    if form.get("redirect_uri") != code.redirect_uri:
        raise _invalid_grant(
            500112, "The reply address does not match the reply address used in the request."
        )
    if code.challenge is not None:
        verifier = form.get("code_verifier")
        if not verifier or not _pkce_matches(verifier, code.challenge, code.challenge_method):
            raise _invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )
    return user_tokens(world, tenant, app, code.user_id, code.scopes, code.nonce)


def refresh_token(world: World, tenant: Tenant, app: App, form: dict[str, str]) -> dict[str, Any]:
    with world.lock:
        record = world.refresh_tokens.get(form.get("refresh_token", ""))
        state = identity_state(world)
        valid_from = state.tokens_valid_from.get(record["user_id"]) if record else None
        reason = state.interaction.get(record["user_id"]) if record else None
    if record is None or record["app_id"] != app.client_id or record["tenant_id"] != tenant.id:
        raise _invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    now = world.clock.now()
    issued = _iso(record["issued_at"])
    if now - record["issued_at"] > float(setting(world, "refresh_token_lifetime")):
        raise _invalid_grant(
            700082,
            f"The refresh token has expired due to inactivity. The token was issued on {issued}.",
        )
    user = tenant.users.get(record["user_id"])
    if user is None or user.deleted:
        raise _invalid_grant(
            50034, f"The user account does not exist in the {tenant.id} directory."
        )
    if valid_from is not None and record["issued_at"] < valid_from:
        raise _invalid_grant(
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is "
            f"needed. The user might have changed or reset their password. The grant was issued "
            f"on '{issued}' and the TokensValidFrom date (before which tokens are not valid) "
            "for this user is "
            f"'{_iso(valid_from)}'.",
        )
    if reason is not None:
        error, code, suberror, description = INTERACTION_REASONS[reason]
        raise EntraError(400, error, code, description, suberror)
    requested = form.get("scope", "").split() or list(record["scopes"])
    # Entra hands out a new refresh token on every use and leaves the old one valid.
    return user_tokens(world, tenant, app, record["user_id"], requested)
