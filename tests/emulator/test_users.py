"""`/v1.0/users` and `/v1.0/users/delta`: paging, $select, removals, delta tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests

from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.emulator.conftest import SeededTenant, app_token, seed_tenant


def graph_client(
    server: EmulatorServer, tenant: SeededTenant, http: requests.Session
) -> httpx.Client:
    assert server.tls is not None
    return httpx.Client(
        base_url=server.graph_url,
        verify=server.tls.client_context(),
        headers={"Authorization": f"Bearer {app_token(server, tenant, http)}"},
    )


@pytest.fixture
def graph(
    emulator: EmulatorServer, seeded_tenant: SeededTenant, msal_http: requests.Session
) -> Iterator[httpx.Client]:
    with graph_client(emulator, seeded_tenant, msal_http) as client:
        yield client


def follow(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page from `url` on; returns (items, pages)."""
    items, pages = [], []
    next_url: str | None = url
    while next_url:
        page = client.get(next_url).json()
        pages.append(page)
        items.extend(page["value"])
        next_url = page.get("@odata.nextLink")
    return items, pages


def delta_round(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], str]:
    """One delta round from `url`: (items, the deltaLink for the next round)."""
    items, pages = follow(client, url)
    assert all("@odata.deltaLink" not in p for p in pages[:-1])
    return items, pages[-1]["@odata.deltaLink"]


def test_pages_follow_top_with_skiptoken_next_links(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    seeded = control.seed_users(seeded_tenant.tenant_id, count=24)
    items, pages = follow(graph, "/users?$top=10")
    assert [len(p["value"]) for p in pages] == [10, 10, 5]  # 24 users + the service account
    assert "$skiptoken" in parse_qs(urlsplit(pages[0]["@odata.nextLink"]).query)
    assert {u["id"] for u in items} == {*seeded, seeded_tenant.account_id}


def test_default_page_is_100(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    control.seed_users(seeded_tenant.tenant_id, count=150)
    assert len(graph.get("/users").json()["value"]) == 100


@pytest.mark.parametrize("top", ["0", "1000", "many"])
def test_top_outside_1_to_999_is_400(graph: httpx.Client, top: str) -> None:
    response = graph.get("/users", params={"$top": top})
    assert response.status_code == 400
    assert "Must be between 1 and 999" in response.json()["error"]["message"]


def test_default_properties_leave_out_nickname_and_sam_name(graph: httpx.Client) -> None:
    (user,) = graph.get("/users").json()["value"]
    assert set(user) == {"id", "userPrincipalName", "displayName", "mail"}


def test_select_returns_the_selected_properties(graph: httpx.Client) -> None:
    (user,) = graph.get("/users", params={"$select": "mailNickname,jobTitle"}).json()["value"]
    assert set(user) == {"id", "mailNickname", "jobTitle"}


def test_select_of_an_unknown_property_is_400(graph: httpx.Client) -> None:
    response = graph.get("/users", params={"$select": "shoeSize"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "Request_BadRequest")


@pytest.mark.parametrize("key", ["id", "upn"])
def test_get_one_user_by_id_or_upn(
    graph: httpx.Client, seeded_tenant: SeededTenant, key: str
) -> None:
    ref = seeded_tenant.account_id if key == "id" else seeded_tenant.account_upn
    assert graph.get(f"/users/{ref}").json()["id"] == seeded_tenant.account_id


def test_soft_deleted_user_is_404_and_not_listed(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    control.delete_user(seeded_tenant.tenant_id, seeded_tenant.account_id)
    response = graph.get(f"/users/{seeded_tenant.account_id}")
    assert (response.status_code, response.json()["error"]["code"]) == (
        404,
        "Request_ResourceNotFound",
    )
    assert graph.get("/users").json()["value"] == []


@pytest.mark.parametrize("path", ["/users", "/users/delta"])
def test_app_without_user_read_all_is_403(
    emulator: EmulatorServer, control: ControlClient, msal_http: requests.Session, path: str
) -> None:
    tenant = seed_tenant(emulator, control, roles=["Presence.Read.All"])
    with graph_client(emulator, tenant, msal_http) as client:
        response = client.get(path)
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "Authorization_RequestDenied",
    )


def test_delta_first_round_pages_then_gives_a_delta_link(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    seeded = control.seed_users(seeded_tenant.tenant_id, count=150)
    items, pages = follow(graph, "/users/delta?$select=id,mail")
    assert ["@odata.nextLink" in p for p in pages] == [True, False]
    assert "@odata.deltaLink" in pages[-1]
    assert {u["id"] for u in items} == {*seeded, seeded_tenant.account_id}
    assert set(items[0]) == {"id", "mail"}


def test_delta_returns_only_changes_with_removals(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    tid = seeded_tenant.tenant_id
    changed, soft, hard = control.seed_users(tid, count=3)
    _, link = delta_round(graph, "/users/delta?$select=id,displayName")
    (added,) = control.seed_users(tid, [{"userPrincipalName": "new@contoso.test"}])
    control.update_user(tid, changed, displayName="Renamed")
    control.delete_user(tid, soft)
    control.delete_user(tid, hard, permanent=True)
    items, _ = delta_round(graph, link)
    assert {item["id"]: item for item in items} == {
        added: {"id": added, "displayName": ""},
        changed: {"id": changed, "displayName": "Renamed"},
        soft: {"id": soft, "@removed": {"reason": "changed"}},
        hard: {"id": hard, "@removed": {"reason": "deleted"}},
    }


def test_restored_user_reappears_in_delta(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    tid = seeded_tenant.tenant_id
    (user,) = control.seed_users(tid, count=1)
    control.delete_user(tid, user)
    _, link = delta_round(graph, "/users/delta?$select=id")
    control.restore_user(tid, user)
    assert delta_round(graph, link)[0] == [{"id": user}]


def test_delta_with_nothing_changed_is_empty(graph: httpx.Client) -> None:
    _, link = delta_round(graph, "/users/delta")
    items, next_link = delta_round(graph, link)
    assert items == []
    assert next_link.startswith("https://")


def test_deltatoken_latest_gives_no_data_and_then_only_new_changes(
    graph: httpx.Client, control: ControlClient, seeded_tenant: SeededTenant
) -> None:
    control.seed_users(seeded_tenant.tenant_id, count=5)
    page = graph.get("/users/delta", params={"$deltatoken": "latest", "$select": "id"}).json()
    assert page["value"] == []
    (added,) = control.seed_users(seeded_tenant.tenant_id, count=1, start=5)
    assert delta_round(graph, page["@odata.deltaLink"])[0] == [{"id": added}]


@pytest.mark.parametrize(
    "token",
    ["not base64!", "WzFd", "eyJ2IjoieCIsInQiOjF9"],  # garbage, [1], {"v":"x","t":1}
)
def test_malformed_delta_token_is_400(graph: httpx.Client, token: str) -> None:
    response = graph.get("/users/delta", params={"$deltatoken": token})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "BadRequest")


def test_expired_delta_token_is_410_with_a_fresh_location(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = emulator_factory()
    with server.control() as control, server.msal_session() as http:
        tenant = seed_tenant(server, control)
        with graph_client(server, tenant, http) as client:
            _, link = delta_round(client, "/users/delta?$select=id,mail")
            control.advance_clock(7 * 24 * 3600 + 1)
            # The old app token expired with the clock; msal would fetch a new one.
            client.headers["Authorization"] = f"Bearer {app_token(server, tenant, http)}"
            gone = client.get(link)
            items, _ = delta_round(client, gone.headers["location"])
    assert gone.status_code == 410
    assert gone.headers["location"] == f"{server.graph_url}/users/delta?%24select=id%2Cmail"
    assert items == [{"id": tenant.account_id, "mail": None}]


def test_holds_100000_users_and_lists_them_in_pages_of_999(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    server = emulator_factory()
    with server.control() as control, server.msal_session() as http:
        tenant = seed_tenant(server, control)
        seeded = control.seed_users(tenant.tenant_id, count=100_000)
        with graph_client(server, tenant, http) as client:
            items, pages = follow(client, "/users?$top=999&$select=id")
    assert len(pages) == 101
    assert len({u["id"] for u in items}) == len(seeded) + 1
