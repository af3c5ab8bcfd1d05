"""The Microsoft identity platform routes: OpenID discovery, JWKS, token and authorize.

Enough of Entra ID for the real `msal` library, unchanged, built with authority
`https://127.0.0.1:<port>/<tenant id>`, `instance_discovery=False` (otherwise msal asks
login.microsoftonline.com about the host) and `verify=<the emulator's CA file>`.

The authorize page signs a user in without a person when the request carries
`login_hint=<userPrincipalName or id>` of a user of the tenant: it answers 302 straight to
`redirect_uri?code=...&state=...`. Without a hint it shows a username/password form
(service accounts seeded with a password can use it).
"""

from __future__ import annotations

import hmac
import html
import secrets
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from emulator import grants
from emulator.entra import (
    AuthCode,
    EntraError,
    authenticate_client,
    base_url,
    find_tenant,
    identity_state,
)
from emulator.tokens import issuer, jwks, setting
from emulator.world import App, Tenant, User, World

Grant = Callable[[World, Tenant, App, dict[str, str]], dict[str, Any]]
GRANTS: dict[str, Grant] = {
    "client_credentials": grants.client_credentials,
    "authorization_code": grants.authorization_code,
    "refresh_token": grants.refresh_token,
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


OPENID_DISCOVERY_EXTRAS: dict[str, Any] = {
    "token_endpoint_auth_methods_supported": [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
    ],
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    "scopes_supported": ["openid", "profile", "email", "offline_access"],
    "request_uri_parameter_supported": False,
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "claims_supported": [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "nonce",
        "preferred_username",
        "name",
        "tid",
        "ver",
        "oid",
    ],  # fmt: skip
    "tenant_region_scope": "EU",
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
}


def openid_configuration(world: World, base: str, tenant_id: str) -> dict[str, Any]:
    prefix = f"{base}/{tenant_id}"
    return {
        "token_endpoint": f"{prefix}/oauth2/v2.0/token",
        "jwks_uri": f"{prefix}/discovery/v2.0/keys",
        "issuer": issuer(world, tenant_id),
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
        **OPENID_DISCOVERY_EXTRAS,
    }


async def _form(request: Request) -> dict[str, str]:
    # Parsed by hand: Starlette's form parser needs python-multipart, which is not a dependency.
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _find_user(tenant: Tenant, hint: str) -> User | None:
    user = tenant.users.get(hint)
    if user is None:
        hint = hint.lower()
        user = next((u for u in tenant.users.values() if u.userPrincipalName.lower() == hint), None)
    return None if user is None or user.deleted else user


def _error_page(error: EntraError) -> HTMLResponse:
    text = html.escape(f"AADSTS{error.code}: {error.description}")
    page = (
        "<!doctype html><title>Sign in</title>"
        f"<h1>Sorry, but we're having trouble signing you in.</h1><p>{text}</p>"
    )
    return HTMLResponse(page, status_code=error.status)


def _signin_page(params: dict[str, str], message: str = "") -> HTMLResponse:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k not in ("username", "password")
    )
    note = f"<p role=alert>{html.escape(message)}</p>" if message else ""
    page = (
        "<!doctype html><title>Sign in to your account</title><h1>Sign in</h1>"
        f'{note}<form method="post">{hidden}'
        '<label>Email, phone, or Skype <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit">Sign in</button></form>'
    )
    return HTMLResponse(page)


def _redirect(params: dict[str, str], answer: dict[str, str]) -> Response:
    if params.get("state"):
        answer["state"] = params["state"]
    target = params["redirect_uri"]
    mode = params.get("response_mode", "query")
    if mode == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in answer.items()
        )
        page = (
            f'<!doctype html><body onload="document.forms[0].submit()"><form method="post" '
            f'action="{html.escape(target)}">{fields}<noscript><button>Continue</button>'
            "</noscript></form>"
        )
        return HTMLResponse(page)
    separator = "#" if mode == "fragment" else ("&" if "?" in target else "?")
    return RedirectResponse(f"{target}{separator}{urlencode(answer)}", status_code=302)


def _complete_signin(world: World, tenant: Tenant, params: dict[str, str], user: User) -> Response:
    state = identity_state(world)
    code = secrets.token_urlsafe(48)
    with world.lock:
        # A fresh interactive sign-in satisfies MFA / consent and starts a new session.
        state.interaction.pop(user.id, None)
        world.revoked_users.discard(user.id)
        state.codes[code] = AuthCode(
            tenant_id=tenant.id,
            client_id=params["client_id"],
            user_id=user.id,
            scopes=params.get("scope", "").split(),
            redirect_uri=params["redirect_uri"],
            challenge=params.get("code_challenge"),
            challenge_method=params.get("code_challenge_method", "plain"),
            nonce=params.get("nonce"),
            expires_at=world.clock.now() + float(setting(world, "auth_code_lifetime")),
        )
    answer = {"code": code, "session_state": str(uuid.uuid4())}
    if params.get("client_info") == "1":
        answer["client_info"] = grants.client_info(user.id, tenant.id)
    return _redirect(params, answer)


def routes(world: World) -> list[BaseRoute]:
    async def discovery(request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        try:
            find_tenant(world, tenant_id)
        except EntraError as error:
            return error.response(world)
        return JSONResponse(openid_configuration(world, base_url(request), tenant_id))

    async def keys(request: Request) -> Response:
        return JSONResponse(jwks(world))

    async def token(request: Request) -> Response:
        form = await _form(request)
        try:
            tenant = find_tenant(world, request.path_params["tenant"])
            app = authenticate_client(world, tenant, form, request)
            grant = GRANTS.get(form.get("grant_type", ""))
            if grant is None:
                raise EntraError(
                    400,
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
                )
            body = grant(world, tenant, app, form)
        except EntraError as error:
            return error.response(world)
        return JSONResponse(body, headers=NO_STORE)

    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(await _form(request))
        try:
            tenant = find_tenant(world, request.path_params["tenant"])
        except EntraError as error:
            return _error_page(error)
        client_id = params.get("client_id", "")
        app = tenant.apps.get(client_id)
        if app is None:
            return _error_page(
                EntraError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{tenant.id}'.")
            )  # fmt: skip
        if params.get("redirect_uri", "") not in app.redirect_uris:
            return _error_page(
                EntraError(400, "invalid_request", 50011,
                           f"The redirect URI '{params.get('redirect_uri', '')}' specified in the "
                           f"request does not match the redirect URIs configured for the "
                           f"application '{client_id}'.")
            )  # fmt: skip
        if "code" not in params.get("response_type", "").split():
            return _redirect(params, {"error": "unsupported_response_type",
                                      "error_description": "AADSTS70005: response_type 'token' "
                                      "is not enabled for the application."})  # fmt: skip
        if request.method == "POST":
            user = _find_user(tenant, params.get("username", ""))
            password = params.get("password", "").encode()
            if (
                user is None
                or user.password is None
                or not hmac.compare_digest(password, user.password.encode())
            ):
                return _signin_page(params, "Your account or password is incorrect.")
            return _complete_signin(world, tenant, params, user)
        hinted = _find_user(tenant, params["login_hint"]) if params.get("login_hint") else None
        if hinted is not None:
            return _complete_signin(world, tenant, params, hinted)
        if params.get("prompt") == "none":
            return _redirect(params, {"error": "login_required",
                                      "error_description": "AADSTS50058: A silent sign-in request "
                                      "was sent but no user is signed in."})  # fmt: skip
        return _signin_page(params)

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
    ]
