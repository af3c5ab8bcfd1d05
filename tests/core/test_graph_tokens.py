"""core.graph_tokens against the Graph emulator: real msal over HTTPS, real Redis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest

from core.graph_tokens import GraphTokens
from core.identity import AuthError, AuthUnavailable, SignInFailed, SignInRequired
from core.state.accounts import AccountStatus
from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.core.conftest import SHORT_TOKEN_LIFETIME, Site, make_site, sign_in, signed_in

DAY = 24 * 3600.0


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


@pytest.mark.parametrize("certificate", [False, True], ids=["secret", "certificate"])
def test_app_only_token_reads_graph(
    emulator: EmulatorServer,
    control: ControlClient,
    tmp_path: Path,
    redis_url: str,
    auth_factory: Callable[..., GraphTokens],
    certificate: bool,
) -> None:
    site = make_site(emulator, control, tmp_path, redis_url, certificate=certificate)
    auth = auth_factory(site)
    with auth.tenant(site.name).graph_client() as graph:
        me = graph.get(f"/users/{next(iter(site.accounts.values()))}")
    token = claims(auth.app_token(site.name))
    assert (token["idtyp"], token["appid"]) == ("app", site.client_id)
    assert me["userPrincipalName"] == next(iter(site.accounts))


def test_app_only_token_comes_from_msal_cache_until_forced(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    tenant = auth_factory(site).tenant(site.name)
    first, again, fresh = tenant.app_token(), tenant.app_token(), tenant.app_token(fresh=True)
    assert first == again
    assert fresh != first


def test_a_wrong_client_secret_is_a_permanent_error_without_the_secret(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    site.control.request(
        "POST",
        f"/tenants/{site.tenant_id}/apps",
        {"client_id": site.client_id, "secret": "rotated-elsewhere"},
    )
    with pytest.raises(AuthError) as caught:
        auth_factory(site).app_token(site.name)
    assert not caught.value.transient
    assert "invalid_client" in str(caught.value)
    assert site.secret not in str(caught.value)


def test_signed_in_account_gets_a_delegated_token_and_is_healthy(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(site)
    account = signed_in(site, auth)
    with auth.tenant(site.name).graph_client(account) as graph:
        me = graph.get("/me")
    assert me["id"] == site.accounts[account]
    assert auth.healthy_accounts(site.name) == [account]
    (health,) = auth.account_health(site.name)
    assert (health.status, health.signed_in_at) == (AccountStatus.HEALTHY, site.clock.now)


def test_silent_refresh_after_the_access_token_expired(
    private_site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    first = auth.delegated_token(private_site.name, account)
    private_site.control.advance_clock(SHORT_TOKEN_LIFETIME + 1)
    private_site.clock.now += 3600
    second = auth.delegated_token(private_site.name, account)
    assert claims(second)["exp"] > claims(first)["exp"]  # type: ignore[operator]
    with auth.tenant(private_site.name).graph_client(account) as graph:
        assert graph.get("/me")["id"] == private_site.accounts[account]
    (health,) = auth.account_health(private_site.name)
    assert health.last_refresh == private_site.clock.now


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("revoke", "invalid_grant: AADSTS50173"),
        ("interaction_required", "interaction_required: AADSTS50079"),
        ("mfa", "invalid_grant/basic_action: AADSTS50076"),
        ("consent", "invalid_grant/consent_required: AADSTS65001"),
    ],
)
def test_a_refused_refresh_marks_the_account_needs_sign_in(
    private_site: Site, auth_factory: Callable[..., GraphTokens], action: str, expected: str
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    user_id = private_site.accounts[account]
    if action == "revoke":
        private_site.control.revoke_user(private_site.tenant_id, user_id)
    else:
        private_site.control.require_interaction(private_site.tenant_id, user_id, action)
    with pytest.raises(SignInRequired) as caught:
        auth.delegated_token(private_site.name, account)
    (health,) = auth.account_health(private_site.name)
    assert (health.status, caught.value.account) == (AccountStatus.NEEDS_SIGN_IN, account)
    assert health.reason is not None and health.reason.startswith(expected)
    assert "Trace ID" not in health.reason
    assert auth.healthy_accounts(private_site.name) == []


def test_signing_in_again_makes_a_revoked_account_healthy(
    private_site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    private_site.control.revoke_user(private_site.tenant_id, private_site.accounts[account])
    with pytest.raises(SignInRequired):
        auth.delegated_token(private_site.name, account)
    sign_in(private_site, auth, account)
    auth.delegated_token(private_site.name, account)
    assert auth.healthy_accounts(private_site.name) == [account]


def test_configured_accounts_never_signed_in_are_listed_and_not_healthy(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(site)
    (account,) = site.accounts
    assert [(h.account, h.status) for h in auth.account_health(site.name)] == [
        (account, AccountStatus.NOT_SIGNED_IN)
    ]
    assert auth.healthy_accounts(site.name) == []


def test_an_account_never_signed_in_needs_sign_in(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    (account,) = site.accounts
    with pytest.raises(SignInRequired, match="no stored sign-in"):
        auth_factory(site).delegated_token(site.name, account)


def test_refresh_stale_accounts_refreshes_only_idle_ones(
    private_site_factory: Callable[..., Site], auth_factory: Callable[..., GraphTokens]
) -> None:
    site = private_site_factory(short_tokens=False, accounts=2)
    auth = auth_factory(site)
    idle, busy = site.accounts
    sign_in(site, auth, idle)
    site.clock.now += 10 * DAY
    sign_in(site, auth, busy)
    site.clock.now += 5 * DAY
    refreshed = auth.refresh_stale_accounts()
    assert refreshed == {site.name: [idle]}
    health = {h.account: h.last_refresh for h in auth.account_health(site.name)}
    assert health[idle] == site.clock.now


def test_refreshing_stale_accounts_keeps_them_alive_past_the_refresh_token_lifetime(
    private_site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    for _ in range(4):  # 4 x 30 days > the 90-day refresh token lifetime
        private_site.control.advance_clock(30 * DAY)
        private_site.clock.now += 30 * DAY
        assert auth.refresh_stale_accounts() == {private_site.name: [account]}
    auth.delegated_token(private_site.name, account)
    assert auth.healthy_accounts(private_site.name) == [account]


def test_start_sign_in_refuses_an_account_that_is_not_configured(
    site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    with pytest.raises(SignInFailed, match="not a service account"):
        auth_factory(site).start_sign_in(site.name, "someone@contoso.test")


def test_a_sign_in_as_another_account_than_asked_is_refused(
    emulator: EmulatorServer,
    control: ControlClient,
    tmp_path: Path,
    redis_url: str,
    auth_factory: Callable[..., GraphTokens],
) -> None:
    site = make_site(emulator, control, tmp_path, redis_url, accounts=2)
    auth = auth_factory(site)
    asked, other = site.accounts
    auth_uri = auth.start_sign_in(site.name, asked)
    asked_hint, other_hint = (urlencode({"login_hint": upn}) for upn in (asked, other))
    answer = control.sign_in(auth_uri.replace(asked_hint, other_hint), submit=False)
    with pytest.raises(SignInFailed, match=f"signed in as {other}"):
        auth.finish_sign_in(answer)
    assert auth.healthy_accounts(site.name) == []


def test_an_identity_platform_outage_is_transient_and_keeps_the_account_healthy(
    private_site: Site, auth_factory: Callable[..., GraphTokens]
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    private_site.control.request(
        "POST", "/faults/route", {"kind": "error", "path": "/oauth2/v2.0/token$", "status": 503}
    )
    with pytest.raises(AuthUnavailable) as caught:
        auth.delegated_token(private_site.name, account)
    assert caught.value.transient
    assert auth.healthy_accounts(private_site.name) == [account]
