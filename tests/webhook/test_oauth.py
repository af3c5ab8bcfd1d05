"""Service-account sign-in through the web process: real uvicorn, emulator and HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
import redis

from core.graph_tokens import GraphTokens
from core.state import accounts
from core.state.accounts import AccountStatus
from emulator.control import ControlClient
from emulator.control_client import FormReader
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.server import EmulatorServer
from tests.core.conftest import SHORT_TOKEN_LIFETIME, Site, auth_factory, make_site  # noqa: F401
from tests.emulator.conftest import control, emulator, emulator_factory  # noqa: F401
from webhook.app import create_app

ADMIN_KEY = "admin-key-for-tests-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}


def submit_form(browser: httpx.Client, page: httpx.Response, **typed: str) -> httpx.Response:
    """Submit the page's form as a browser would (Entra's form_post page submits itself)."""
    form = FormReader()
    form.feed(page.text)
    assert form.action is not None, page.text[:200]
    return browser.post(form.action or str(page.url), data={**form.fields, **typed})


@dataclass
class Bridge:
    site: Site
    url: str


@pytest.fixture
def bridge_factory(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., Bridge]]:
    served: list[ServedApp] = []

    def start(server: EmulatorServer, ctl: ControlClient, *, extra_users: int = 0) -> Bridge:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        site = make_site(
            server, ctl, tmp_path, redis_url,
            public_base_url=url, admin_key=ADMIN_KEY, extra_users=extra_users,
        )  # fmt: skip
        served.append(ServedApp(create_app(site.settings), port=port).__enter__())
        return Bridge(site, url)

    yield start
    for app in served:
        app.__exit__(None, None, None)


@pytest.fixture
def bridge(
    bridge_factory: Callable[..., Bridge],
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
) -> Bridge:
    return bridge_factory(emulator, control)


def browser_for(server: EmulatorServer) -> httpx.Client:
    assert server.tls is not None
    return httpx.Client(verify=server.tls.client_context(), follow_redirects=True)


def sign_in_through_the_web(bridge: Bridge, account: str | None, **typed: str) -> httpx.Response:
    """Admin opens /oauth/login; the identity platform answers; the browser posts it back."""
    params = {"tenant": bridge.site.name, **({"account": account} if account else {})}
    with browser_for(bridge.site.server) as browser:
        page = browser.get(f"{bridge.url}/oauth/login", params=params, headers=BEARER)
        assert page.status_code == 200 and page.url.host == "127.0.0.1", page.text[:200]
        if typed:  # no login_hint: the sign-in form first
            page = submit_form(browser, page, **typed)
        return submit_form(browser, page)


def test_sign_in_end_to_end_then_silent_refresh(
    bridge_factory: Callable[..., Bridge],
    emulator_factory: Callable[..., EmulatorServer],  # noqa: F811
    auth_factory: Callable[..., GraphTokens],  # noqa: F811
) -> None:
    server = emulator_factory()
    with server.control() as private_control:
        private_control.update_settings(access_token_lifetime=SHORT_TOKEN_LIFETIME)
        bridge = bridge_factory(server, private_control)
        (account,) = bridge.site.accounts
        landed = sign_in_through_the_web(bridge, account)
        auth = auth_factory(bridge.site)
        first = auth.delegated_token(bridge.site.name, account)
        private_control.advance_clock(SHORT_TOKEN_LIFETIME + 1)
        bridge.site.clock.now += 3600
        with auth.tenant(bridge.site.name).graph_client(account) as graph:
            me = graph.get("/me")
    assert (landed.status_code, str(landed.url)) == (200, f"{bridge.url}/oauth/callback")
    assert account in landed.text
    assert me["id"] == bridge.site.accounts[account]
    second = auth.delegated_token(bridge.site.name, account)
    exp = [jwt.decode(t, options={"verify_signature": False})["exp"] for t in (first, second)]
    assert exp[1] > exp[0]
    (health,) = auth.account_health(bridge.site.name)
    assert (health.status, health.last_refresh) == (AccountStatus.HEALTHY, bridge.site.clock.now)


def test_login_with_post_answers_303_and_the_url(bridge: Bridge) -> None:
    (account,) = bridge.site.accounts
    response = httpx.post(
        f"{bridge.url}/oauth/login",
        params={"tenant": bridge.site.name, "account": account},
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert response.status_code == 303
    assert response.headers["location"] == response.json()["auth_uri"]
    assert response.headers["location"].startswith(
        bridge.site.server.authority(bridge.site.tenant_id)
    )


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({}, {"key": ADMIN_KEY}),  # secrets in URLs end up in logs: not accepted
    ],
    ids=["none", "wrong", "in-url"],
)
def test_login_needs_the_admin_key_in_a_header(
    bridge: Bridge, redis_client: redis.Redis, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = httpx.get(
        f"{bridge.url}/oauth/login", params={"tenant": bridge.site.name, **params}, headers=headers
    )
    assert response.status_code == 401
    assert list(redis_client.scan_iter(accounts.FLOW_PREFIX + "*")) == []


@pytest.mark.parametrize(
    ("params", "status"),
    [({"tenant": "nope"}, 404), ({"tenant": "contoso", "account": "x@contoso.test"}, 400)],
    ids=["unknown-tenant", "unknown-account"],
)
def test_login_refuses_what_is_not_configured(
    bridge: Bridge, params: dict[str, str], status: int
) -> None:
    response = httpx.get(f"{bridge.url}/oauth/login", params=params, headers=BEARER)
    assert response.status_code == status


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("POST", {"code": "abc", "state": "never-issued"}),
        ("POST", {"code": "abc"}),
        ("GET", {"code": "abc", "state": "never-issued"}),
    ],
    ids=["unknown-state", "no-state", "query"],
)
def test_a_callback_without_a_known_state_is_400(
    bridge: Bridge, method: str, data: dict[str, str]
) -> None:
    url = f"{bridge.url}/oauth/callback"
    response = httpx.post(url, data=data) if method == "POST" else httpx.get(url, params=data)
    assert response.status_code == 400
    assert "unknown or expired sign-in state" in response.text


def test_a_replayed_callback_is_400(bridge: Bridge) -> None:
    (account,) = bridge.site.accounts
    with browser_for(bridge.site.server) as browser:
        page = browser.get(
            f"{bridge.url}/oauth/login",
            params={"tenant": bridge.site.name, "account": account},
            headers=BEARER,
        )
        first, again = submit_form(browser, page), submit_form(browser, page)
    assert (first.status_code, again.status_code) == (200, 400)


def test_a_user_who_is_not_a_service_account_is_refused(
    bridge_factory: Callable[..., Bridge],
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
    auth_factory: Callable[..., GraphTokens],  # noqa: F811
) -> None:
    bridge = bridge_factory(emulator, control, extra_users=1)
    _, stranger = bridge.site.accounts
    landed = sign_in_through_the_web(
        bridge, None, username=stranger, password=bridge.site.passwords[stranger]
    )
    assert landed.status_code == 400
    assert "is not a service account" in landed.text
    assert auth_factory(bridge.site).healthy_accounts(bridge.site.name) == []
