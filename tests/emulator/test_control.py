"""The `/_emulator/` control API through `ControlClient`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import httpx
import pytest
import requests

from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.emulator.conftest import SeededTenant, app_token, make_certificate


def status_of(call: Callable[[], object]) -> int:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        call()
    return raised.value.response.status_code


def test_seeding_an_app_reports_its_certificate_thumbprint(
    control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    cert = make_certificate()
    app = control.seed_app(seeded_tenant.tenant_id, certificate_pem=cert.certificate_pem)
    assert app["thumbprints"] == [cert.thumbprint]


def test_seeded_users_are_counted_per_tenant(
    control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    ids = control.seed_users(seeded_tenant.tenant_id, count=30)
    ids += control.seed_users(seeded_tenant.tenant_id, [{"userPrincipalName": "x@contoso.test"}])
    tenants = {t["id"]: t for t in control.request("GET", "/tenants")["value"]}
    assert len(set(ids)) == 31
    assert tenants[seeded_tenant.tenant_id]["users"] == 32  # and the service account


@pytest.mark.parametrize(
    "users",
    [[{"userPrincipalName": "a@contoso.test", "shoeSize": 44}], [{"displayName": "No UPN"}]],
)
def test_bad_user_specs_are_400(
    control: ControlClient, seeded_tenant: SeededTenant, users: list[dict[str, object]]
) -> None:
    assert status_of(lambda: control.seed_users(seeded_tenant.tenant_id, users)) == 400


def test_service_account_needs_a_password(
    control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    call = partial(control.add_service_account, seeded_tenant.tenant_id, "s@contoso.test", "")
    assert status_of(call) == 400


def test_user_update_shows_in_graph(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
    graph_http: httpx.Client,
) -> None:
    control.update_user(seeded_tenant.tenant_id, seeded_tenant.account_id, mail="svc@contoso.test")
    token = app_token(emulator, seeded_tenant, msal_http)
    user = graph_http.get(
        f"/users/{seeded_tenant.account_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert user["mail"] == "svc@contoso.test"


def test_only_directory_fields_are_editable(
    control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    call = partial(control.update_user, seeded_tenant.tenant_id, seeded_tenant.account_id)
    assert status_of(partial(call, version=9)) == 400


@pytest.mark.parametrize("action", ["revoke", "restore", "require-interaction"])
def test_actions_on_an_unknown_user_are_404(
    control: ControlClient, seeded_tenant: SeededTenant, action: str
) -> None:
    path = f"/tenants/{seeded_tenant.tenant_id}/users/nobody/{action}"
    assert status_of(lambda: control.request("POST", path)) == 404


def test_unknown_tenant_is_404(control: ControlClient) -> None:
    assert status_of(lambda: control.seed_users("no-such-tenant", count=1)) == 404


def test_tokens_filter_by_app(
    emulator: EmulatorServer,
    control: ControlClient,
    seeded_tenant: SeededTenant,
    msal_http: requests.Session,
) -> None:
    app_token(emulator, seeded_tenant, msal_http)
    (record,) = control.tokens(app_id=seeded_tenant.client_id)
    assert (record["idtyp"], record["tid"]) == ("app", seeded_tenant.tenant_id)


def test_clock_advances_and_never_goes_back(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    with emulator_factory().control() as control:
        before = control.clock()
        after = control.advance_clock(3600)
        assert after - before >= 3600
        assert status_of(lambda: control.advance_clock(-1)) == 400


def test_settings_change_token_lifetimes(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    with emulator_factory().control() as control:
        assert control.settings()["access_token_lifetime"] == 3600
        assert control.update_settings(access_token_lifetime=600)["access_token_lifetime"] == 600
        assert status_of(lambda: control.update_settings(access_token_lifetime=[1])) == 400


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_callback_echoes_the_sign_in_answer(
    emulator: EmulatorServer, graph_http: httpx.Client, method: str
) -> None:
    url = f"{emulator.base_url}/_emulator/callback"
    if method == "GET":
        response = graph_http.get(url, params={"code": "c", "state": "s"})
    else:
        response = graph_http.post(url, data={"code": "c", "state": "s"})
    assert response.json() == {"query": {"code": "c", "state": "s"}}
