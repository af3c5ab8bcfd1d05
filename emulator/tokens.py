"""Token signing and checking: the emulator's RS256 key, its JWKS, access tokens, Bearer auth.

Times come from `world.clock`, so advancing the clock expires tokens.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.exceptions import HTTPException
from starlette.requests import Request

from emulator.world import World, extension

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
DEFAULT_ISSUER_BASE = "https://127.0.0.1"
# Entra backdates nbf by five minutes to absorb clock skew between hosts.
NOT_BEFORE_SKEW = 300

# Defaults for world.settings keys this module and identity.py read (seconds).
DEFAULT_SETTINGS: dict[str, Any] = {
    "access_token_lifetime": 3600,
    "id_token_lifetime": 3600,
    "refresh_token_lifetime": 90 * 24 * 3600,
    "auth_code_lifetime": 600,
    "delta_token_lifetime": 7 * 24 * 3600,
    "delta_page_size": 100,
}


def setting(world: World, name: str) -> Any:
    return world.settings.get(name, DEFAULT_SETTINGS[name])


def error_body(code: str, message: str) -> dict[str, Any]:
    """Graph's error document: `{"error": {"code", "message", "innerError"}}`."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }


class GraphError(HTTPException):
    """An HTTP error whose body is Graph's error document (`error_body`)."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, message, headers)
        self.body = error_body(code, message)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or Graph's 400 BadRequest."""
    try:
        body = await request.json()
    except ValueError:
        raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


@dataclass
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str
    issuer_base: str = DEFAULT_ISSUER_BASE

    @property
    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:  # the private key never shows in logs
        return f"SigningKey(kid={self.kid!r}, issuer_base={self.issuer_base!r})"


def _new_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Entra's kid looks like a base64url SHA-1 of the key; anything stable and unique works.
    digest = hashlib.sha1(der, usedforsecurity=False).digest()
    kid = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return SigningKey(private_key=key, kid=kid)


def signing_key(world: World) -> SigningKey:
    return extension(world, "tokens.signing_key", _new_key)


def set_issuer_base(world: World, base_url: str) -> None:
    """Set the public base URL (the server's `https://host:port`) used in `iss`."""
    signing_key(world).issuer_base = base_url.rstrip("/")


def issuer(world: World, tenant_id: str) -> str:
    return f"{signing_key(world).issuer_base}/{tenant_id}/v2.0"


def jwks(world: World) -> dict[str, Any]:
    key = signing_key(world)
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
        key.private_key.public_key(), as_dict=True
    )
    jwk.update({"kid": key.kid, "x5t": key.kid, "use": "sig", "alg": "RS256"})
    return {"keys": [jwk]}


def sign_jwt(world: World, claims: dict[str, Any]) -> str:
    key = signing_key(world)
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "x5t": key.kid}
    )


def verify_jwt(world: World, token: str, audience: str | list[str] | None = None) -> dict[str, Any]:
    """Check signature and audience; raise `jwt.PyJWTError` (times are checked by callers)."""
    key = signing_key(world)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.private_key.public_key(),
        algorithms=["RS256"],
        audience=audience,
        options={
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": audience is not None,
        },
    )
    return claims


def issue_access_token(
    world: World,
    *,
    tenant_id: str,
    app_id: str,
    user_id: str | None,
    scopes: list[str] | None = None,
    roles: list[str] | None = None,
    lifetime: float | None = None,
) -> str:
    """Sign a Graph access token; app-only when `user_id` is None, delegated otherwise."""
    now = int(world.clock.now())
    ttl = int(lifetime if lifetime is not None else setting(world, "access_token_lifetime"))
    claims: dict[str, Any] = {
        "aud": GRAPH_AUDIENCE,
        "iss": issuer(world, tenant_id),
        "iat": now,
        "nbf": now - NOT_BEFORE_SKEW,
        "exp": now + ttl,
        "tid": tenant_id,
        "appid": app_id,
        "azp": app_id,
        "uti": uuid.uuid4().hex,
        "ver": "2.0",
    }
    if user_id is None:
        # App-only: the caller is the app's service principal (modelled as the app id).
        claims.update({"oid": app_id, "sub": app_id, "idtyp": "app", "roles": list(roles or [])})
    else:
        claims.update({"oid": user_id, "sub": user_id, "idtyp": "user"})
        claims["scp"] = " ".join(scopes or [])
        user = world.tenants[tenant_id].users.get(user_id) if tenant_id in world.tenants else None
        if user is not None:
            claims.update({"upn": user.userPrincipalName, "name": user.displayName})
    token = sign_jwt(world, claims)
    with world.lock:
        world.tokens_issued.append(dict(claims))
    return token


def _unauthorized(message: str) -> GraphError:
    # Graph answers 401 with a WWW-Authenticate challenge naming the identity platform.
    challenge = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
        f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
    )
    return GraphError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": challenge})


def authenticate(world: World, request: Request) -> dict[str, Any]:
    """Return the verified claims of the request's Bearer token, or raise a Graph 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Access token is empty.")
    try:
        claims = verify_jwt(world, token, audience=[GRAPH_AUDIENCE, GRAPH_APP_ID])
    except jwt.InvalidAudienceError:
        raise _unauthorized("Access token validation failure. Invalid audience.") from None
    except jwt.PyJWTError:
        raise _unauthorized("IDX14100: JWT is not well formed or signature is invalid.") from None
    now = world.clock.now()
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
        raise _unauthorized("Lifetime validation failed, the token is expired.")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > now:
        raise _unauthorized("Lifetime validation failed, the token is not yet valid.")
    return claims


def has_permission(claims: dict[str, Any], *permissions: str) -> bool:
    """True when the token carries any of `permissions` as a role (app) or scope (delegated)."""
    granted = set(claims.get("roles") or []) | set(str(claims.get("scp", "")).split())
    return any(p in granted for p in permissions)
