"""Entra ID's rules shared by the identity routes: errors, sign-in state, client authentication.

Error bodies follow Entra's shape: `error`, `error_description` starting with `AADSTSnnnnn:`,
`error_codes`, `suberror` where Entra sends one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator.tokens import issuer
from emulator.world import App, Tenant, World, extension

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRAPH_PREFIXES = ("https://graph.microsoft.com/", "00000003-0000-0000-c000-000000000000/")
# What a delegated `.default` request is granted: the emulator has no consent records.
DEFAULT_DELEGATED_SCOPES = ("User.Read", "Presence.Read.All")
# reason -> (error, AADSTS code, suberror, description)
INTERACTION_REASONS: dict[str, tuple[str, int, str | None, str]] = {
    "interaction_required": (
        "interaction_required",
        50079,
        None,
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must enroll in multi-factor authentication to access "
        "'00000003-0000-0000-c000-000000000000'.",
    ),
    "mfa": (
        "invalid_grant",
        50076,
        "basic_action",
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication to access "
        "'00000003-0000-0000-c000-000000000000'.",
    ),
    "consent": (
        "invalid_grant",
        65001,
        "consent_required",
        "The user or administrator has not consented to use the application. Send an "
        "interactive authorization request for this user and resource.",
    ),
}


@dataclass
class AuthCode:
    tenant_id: str
    client_id: str
    user_id: str
    scopes: list[str]
    redirect_uri: str
    challenge: str | None
    challenge_method: str
    nonce: str | None
    expires_at: float


@dataclass
class IdentityState:
    codes: dict[str, AuthCode] = field(default_factory=dict)
    # Entra's "TokensValidFrom": refresh tokens issued before this time are revoked.
    tokens_valid_from: dict[str, float] = field(default_factory=dict)
    interaction: dict[str, str] = field(default_factory=dict)  # user id -> reason


def identity_state(world: World) -> IdentityState:
    return extension(world, "identity.state", IdentityState)


def revoke_user(world: World, user_id: str) -> None:
    """Revoke every refresh token issued to the user so far (like revokeSignInSessions)."""
    with world.lock:
        identity_state(world).tokens_valid_from[user_id] = world.clock.now()
        world.revoked_users.add(user_id)


def require_interaction(world: World, user_id: str, reason: str = "interaction_required") -> None:
    if reason not in INTERACTION_REASONS:
        raise ValueError(f"reason must be one of {sorted(INTERACTION_REASONS)}")
    with world.lock:
        identity_state(world).interaction[user_id] = reason


class EntraError(Exception):
    def __init__(
        self, status: int, error: str, code: int, description: str, suberror: str | None = None
    ) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status, self.error, self.code, self.suberror = status, error, code, suberror
        self.description = description

    def response(self, world: World) -> JSONResponse:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = world.clock.utcnow().strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
            f"Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return JSONResponse(body, self.status, headers={"Cache-Control": "no-store"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def find_tenant(world: World, tenant_id: str) -> Tenant:
    tenant = world.tenants.get(tenant_id)
    if tenant is None:
        raise EntraError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID.",
        )
    return tenant


def graph_scope(scope: str) -> str:
    for prefix in GRAPH_PREFIXES:
        if scope.startswith(prefix):
            return scope[len(prefix) :]
    return scope


def _registered_certificate(app: App, header: dict[str, Any]) -> x509.Certificate | None:
    for pem in app.certificate_thumbprints.values():
        cert = x509.load_pem_x509_certificate(pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        sha1 = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
        sha256 = b64url(hashlib.sha256(der).digest())
        # msal pads its base64url thumbprints; Entra accepts either spelling.
        x5t, x5t_s256 = str(header.get("x5t", "")), str(header.get("x5t#S256", ""))
        if x5t.rstrip("=") == sha1 or x5t_s256.rstrip("=") == sha256:
            return cert
    return None


def _verify_assertion(world: World, app: App, assertion: str, audiences: list[str]) -> None:
    def invalid(code: int, description: str) -> EntraError:
        return EntraError(401, "invalid_client", code, description)

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise invalid(50027, "JWT token is invalid or malformed.") from None
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise invalid(
            5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm."
        )
    cert = _registered_certificate(app, header)
    if cert is None:
        raise invalid(
            700027,
            "The certificate with identifier used to sign the client assertion is not "
            f"registered on application '{app.client_id}'.",
        )
    try:
        # The assertion's times come from the client's own (real) clock, not the emulated one.
        claims = jwt.decode(
            assertion,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=[alg],
            audience=audiences,
            issuer=app.client_id,
            leeway=300,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
        raise invalid(700024, "Client assertion is not within its valid time range.") from None
    except jwt.InvalidAudienceError:
        raise invalid(
            700212, "No matching federated identity record found for the audience."
        ) from None
    except jwt.PyJWTError:
        raise invalid(700027, "Client assertion failed signature validation.") from None
    if claims.get("sub") != app.client_id:
        raise invalid(700021, "Client assertion application identifier doesn't match 'client_id'.")


def authenticate_client(
    world: World, tenant: Tenant, form: dict[str, str], request: Request
) -> App:
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(basic[6:].strip()).decode()
        except ValueError:
            raise EntraError(
                401, "invalid_client", 7000216, "Malformed client credentials."
            ) from None
        basic_id, _, basic_secret = decoded.partition(":")
        client_id, secret = client_id or basic_id, basic_secret
    if not client_id:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    app = tenant.apps.get(client_id)
    if app is None:
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.id}'.",
        )
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise EntraError(400, "invalid_request", 50012, "Invalid client_assertion_type.")
        endpoint = f"{base_url(request)}/{tenant.id}/oauth2/v2.0/token"
        _verify_assertion(world, app, assertion, [endpoint, issuer(world, tenant.id)])
    elif secret is not None:
        if app.secret is None or not hmac.compare_digest(secret.encode(), app.secret.encode()):
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for app '{client_id}'.",
            )
    else:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    return app
