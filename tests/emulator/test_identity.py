"""The identity platform against the real, unchanged msal library over real HTTPS."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import msal
import pytest
import requests

from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.emulator.conftest import (
    GRAPH_DEFAULT,
    SeededTenant,
    app_token,
    make_certificate,
    seed_tenant,
)

SCOPES = ["Presence.Read.All"]


def confidential(
    server: EmulatorServer, tenant: SeededTenant, http: requests.Session, credential: Any = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        tenant.client_id,
        client_credential=tenant.secret if credential is None else credential,
        **server.msal_options(tenant.tenant_id, http),
    )


def verified_claims(server: EmulatorServer, token: str, audience: str) -> dict[str, Any]:
    """Check a token the way a relying party would: JWKS from the discovery document."""
    assert server.tls is not None
    verify = server.tls.client_context()
    tenant_id = jwt.decode(token, options={"verify_signature": False})["tid"]
    config = httpx.get(
        f"{server.authority(tenant_id)}/v2.0/.well-known/openid-configuration", verify=verify
    ).json()
    keys = httpx.get(config["jwks_uri"], verify=verify).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in keys["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=audience,
        issuer=config["issuer"],
    )
    return claims


def signed_in(
    server: EmulatorServer,
    control: ControlClient,
    tenant: SeededTenant,
    http: requests.Session,
) -> tuple[msal.ConfidentialClientApplication, dict[str, Any]]:
    """The service account signs in through the auth code flow (form_post, no person)."""
    app = confidential(server, tenant, http)
    flow = app.initiate_auth_code_flow(
        SCOPES,
        redirect_uri=tenant.redirect_uri,
        login_hint=tenant.account_upn,
        response_mode="form_post",
    )
    result = app.acquire_token_by_auth_code_flow(flow, control.sign_in(flow["auth_uri"]))
    assert "access_token" in result, result
    return app, result


def test_discovery_document_points_at_this_emulator(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, graph_http: httpx.Client
) -> None:
    authority = emulator.authority(seeded_tenant.tenant_id)
    config = graph_http.get(f"{authority}/v2.0/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{authority}/v2.0"
    assert config["token_endpoint"] == f"{authority}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{authority}/oauth2/v2.0/authorize"
    assert config["jwks_uri"] == f"{authority}/discovery/v2.0/keys"


def test_discovery_of_an_unknown_tenant_is_entra_400(
    emulator: EmulatorServer, graph_http: httpx.Client
) -> None:
    response = graph_http.get(f"{emulator.base_url}/nope/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_client_secret_gets_an_app_only_token(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, msal_http: requests.Session
) -> None:
    token = app_token(emulator, seeded_tenant, msal_http)
    claims = verified_claims(emulator, token, "https://graph.microsoft.com")
    assert claims["tid"] == seeded_tenant.tenant_id
    assert claims["appid"] == claims["azp"] == claims["oid"] == seeded_tenant.client_id
    assert claims["roles"] == ["User.Read.All", "Presence.Read.All", "Presence.ReadWrite.All"]
    assert "scp" not in claims


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"])
def test_certificate_assertion_gets_an_app_only_token(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
    form: str,
) -> None:
    # msal signs RS256 with x5t for a thumbprint, PS256 with x5t#S256 for a certificate.
    cert = make_certificate()
    client_id = control.seed_app(seeded_tenant.tenant_id, certificate_pem=cert.certificate_pem)[
        "client_id"
    ]
    credential: dict[str, str] = {"private_key": cert.private_key_pem}
    credential[form] = cert.thumbprint if form == "thumbprint" else cert.certificate_pem
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        **emulator.msal_options(seeded_tenant.tenant_id, msal_http),
    )
    result = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["appid"] == (
        client_id
    )


def test_unregistered_certificate_is_invalid_client(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    registered, other = make_certificate(), make_certificate()
    client_id = control.seed_app(
        seeded_tenant.tenant_id, certificate_pem=registered.certificate_pem
    )["client_id"]
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential={"private_key": other.private_key_pem, "thumbprint": other.thumbprint},
        **emulator.msal_options(seeded_tenant.tenant_id, msal_http),
    )
    result = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert (result["error"], result["error_codes"]) == ("invalid_client", [700027])


def test_wrong_secret_is_invalid_client(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, msal_http: requests.Session
) -> None:
    app = confidential(emulator, seeded_tenant, msal_http, credential="not-the-secret")
    result = app.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert (result["error"], result["error_codes"]) == ("invalid_client", [7000215])
    assert result["error_description"].startswith("AADSTS7000215: ")


def test_client_credentials_need_a_default_scope(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, msal_http: requests.Session
) -> None:
    app = confidential(emulator, seeded_tenant, msal_http)
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/User.Read.All"])
    assert result["error"] == "invalid_scope"


def test_following_redirects_ends_at_the_redirect_uri_with_code_and_state(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, msal_http: requests.Session
) -> None:
    app = confidential(emulator, seeded_tenant, msal_http)
    with pytest.warns(UserWarning, match="form_post"):  # msal's advice for query mode
        flow = app.initiate_auth_code_flow(
            SCOPES, redirect_uri=seeded_tenant.redirect_uri, login_hint=seeded_tenant.account_upn
        )
    assert emulator.tls is not None
    with httpx.Client(verify=emulator.tls.client_context(), follow_redirects=True) as browser:
        landed = browser.get(flow["auth_uri"])
    assert str(landed.url).startswith(seeded_tenant.redirect_uri + "?")
    auth_response = landed.json()["query"]
    assert auth_response["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert result["id_token_claims"]["preferred_username"] == seeded_tenant.account_upn


def test_auth_code_flow_gives_delegated_tokens_and_an_account(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    app, result = signed_in(emulator, control, seeded_tenant, msal_http)
    claims = verified_claims(emulator, result["access_token"], "https://graph.microsoft.com")
    assert claims["oid"] == seeded_tenant.account_id
    assert claims["scp"] == "Presence.Read.All"
    assert claims["azp"] == seeded_tenant.client_id
    assert "refresh_token" in result
    assert [a["username"] for a in app.get_accounts()] == [seeded_tenant.account_upn]


def test_issued_tokens_are_recorded_as_claims_only(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    _, result = signed_in(emulator, control, seeded_tenant, msal_http)
    (record,) = control.tokens(user_id=seeded_tenant.account_id)
    assert record == jwt.decode(result["access_token"], options={"verify_signature": False})


def raw_code_exchange(
    emulator: EmulatorServer,
    control: ControlClient,
    tenant: SeededTenant,
    msal_http: requests.Session,
    verifier: Callable[[dict[str, Any]], str],
) -> list[httpx.Response]:
    """Redeem one authorization code twice by hand, with the verifier `verifier(flow)`."""
    app = confidential(emulator, tenant, msal_http)
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri=tenant.redirect_uri, login_hint=tenant.account_upn,
        response_mode="form_post",
    )  # fmt: skip
    code = control.sign_in(flow["auth_uri"], submit=False)["code"]
    form = {
        "grant_type": "authorization_code",
        "client_id": tenant.client_id,
        "client_secret": tenant.secret,
        "code": code,
        "redirect_uri": tenant.redirect_uri,
        "code_verifier": verifier(flow),
        "scope": "Presence.Read.All offline_access openid",
    }
    assert emulator.tls is not None
    url = f"{emulator.authority(tenant.tenant_id)}/oauth2/v2.0/token"
    with httpx.Client(verify=emulator.tls.client_context()) as client:
        return [client.post(url, data=form) for _ in range(2)]


def test_a_code_is_redeemed_once(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    first, second = raw_code_exchange(
        emulator, control, seeded_tenant, msal_http, lambda flow: flow["code_verifier"]
    )
    assert first.status_code == 200
    assert (second.status_code, second.json()["error"]) == (400, "invalid_grant")


def test_a_wrong_pkce_verifier_is_invalid_grant(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    def wrong(flow: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(b"x").digest()).decode().rstrip("=")

    first, _ = raw_code_exchange(emulator, control, seeded_tenant, msal_http, wrong)
    assert (first.status_code, first.json()["error_codes"]) == (400, [501481])


def test_silent_refresh_after_the_access_token_expired(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = emulator_factory()
    # msal's cache runs on the wall clock and refreshes tokens with under 5 minutes left:
    # a 4-minute lifetime makes it go to the emulator, whose clock decides expiry.
    with server.control() as control, server.msal_session() as http:
        control.update_settings(access_token_lifetime=240)
        tenant = seed_tenant(server, control)
        app, first = signed_in(server, control, tenant, http)
        control.advance_clock(241)
        assert server.tls is not None
        graph = httpx.Client(base_url=server.graph_url, verify=server.tls.client_context())
        with graph:
            expired = graph.get("/me", headers={"Authorization": f"Bearer {first['access_token']}"})
            (account,) = app.get_accounts()
            second = app.acquire_token_silent(SCOPES, account)
            assert second is not None
            fresh = graph.get("/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert expired.status_code == 401
    assert second["token_source"] == "identity_provider"  # noqa: S105
    assert fresh.json()["id"] == tenant.account_id


def test_revoked_user_gets_invalid_grant(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    app, _ = signed_in(emulator, control, seeded_tenant, msal_http)
    control.revoke_user(seeded_tenant.tenant_id, seeded_tenant.account_id)
    (account,) = app.get_accounts()
    result = app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    assert result is not None
    assert (result["error"], result["error_codes"]) == ("invalid_grant", [50173])


def test_signing_in_again_after_revocation_works(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    signed_in(emulator, control, seeded_tenant, msal_http)
    control.revoke_user(seeded_tenant.tenant_id, seeded_tenant.account_id)
    app, _ = signed_in(emulator, control, seeded_tenant, msal_http)
    (account,) = app.get_accounts()
    result = app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    assert result is not None and "access_token" in result


@pytest.mark.parametrize(
    ("reason", "error", "suberror"),
    [
        ("interaction_required", "interaction_required", None),
        ("mfa", "invalid_grant", "basic_action"),
        ("consent", "invalid_grant", "consent_required"),
    ],
)
def test_interaction_can_be_required(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
    reason: str,
    error: str,
    suberror: str | None,
) -> None:
    app, _ = signed_in(emulator, control, seeded_tenant, msal_http)
    control.require_interaction(seeded_tenant.tenant_id, seeded_tenant.account_id, reason)
    (account,) = app.get_accounts()
    result = app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    assert result is not None
    assert (result["error"], result.get("suberror")) == (error, suberror)


def test_refresh_token_expires_after_its_lifetime(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = emulator_factory()
    with server.control() as control, server.msal_session() as http:
        tenant = seed_tenant(server, control)
        app, _ = signed_in(server, control, tenant, http)
        control.advance_clock(control.settings()["refresh_token_lifetime"] + 1)
        (account,) = app.get_accounts()
        result = app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    assert result is not None
    assert (result["error"], result["error_codes"]) == ("invalid_grant", [700082])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Access token is empty."),
        ("Bearer not.a.jwt", "IDX14100"),
        ("Basic abc", "Access token is empty."),
    ],
)
def test_graph_refuses_missing_or_bad_tokens(
    graph_http: httpx.Client, header: str | None, message: str
) -> None:
    response = graph_http.get("/users", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert message in response.json()["error"]["message"]
    assert response.headers["www-authenticate"].startswith("Bearer ")
