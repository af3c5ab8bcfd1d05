"""Access to the status page: the admin key, the session cookie, login, logout, the throttle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from pydantic import SecretStr

from tests.webhook.admin.conftest import ADMIN_KEY, BEARER, T, logged_in
from webhook.admin.sessions import COOKIE, SESSION_SECONDS, issue_session, session_valid
from webhook.auth import ADMIN_KEY_ATTEMPTS, ADMIN_KEY_LOCKOUT_SECONDS


@pytest.mark.parametrize("path", ["/admin", "/admin/api/status", "/admin/events"])
def test_every_admin_route_refuses_without_a_key(bridge: Callable[..., str], path: str) -> None:
    assert httpx.get(bridge() + path).status_code == 401


def test_the_page_offers_the_login_form_without_a_key(bridge: Callable[..., str]) -> None:
    page = httpx.get(bridge() + "/admin")
    assert 'action="/admin/login"' in page.text and T not in page.text


@pytest.mark.parametrize("path", ["/admin", "/admin/api/status"])
def test_a_wrong_bearer_key_is_refused(bridge: Callable[..., str], path: str) -> None:
    response = httpx.get(bridge() + path, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_an_unset_admin_key_closes_the_page(bridge: Callable[..., str]) -> None:
    url = bridge(admin_key=None)
    login = httpx.post(url + "/admin/login", data={"key": ""})
    page = httpx.get(url + "/admin")
    assert (login.status_code, page.status_code, "closed" in page.text) == (403, 403, True)


def test_a_wrong_key_sets_no_session(bridge: Callable[..., str]) -> None:
    response = httpx.post(bridge() + "/admin/login", data={"key": "wrong"})
    assert (response.status_code, "set-cookie" in response.headers) == (401, False)


def test_login_sets_a_strict_httponly_session_cookie(bridge: Callable[..., str]) -> None:
    response = httpx.post(bridge() + "/admin/login", data={"key": ADMIN_KEY})
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    assert all(
        part in cookie
        for part in ("httponly", "samesite=strict", "path=/admin", f"max-age={SESSION_SECONDS}")
    )


def test_the_session_opens_the_page_with_the_tenant(bridge: Callable[..., str]) -> None:
    with logged_in(bridge()) as client:
        page = client.get("/admin")
    assert page.status_code == 200 and f'data-tenant="{T}"' in page.text and "alice" in page.text


def test_logout_ends_the_session(bridge: Callable[..., str]) -> None:
    with logged_in(bridge()) as client:
        client.get("/admin/logout")
        assert client.get("/admin").status_code == 401


def test_a_tampered_session_cookie_is_refused(bridge: Callable[..., str]) -> None:
    token = issue_session(SecretStr(ADMIN_KEY), time.time())
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert httpx.get(bridge() + "/admin", cookies={COOKIE: forged}).status_code == 401


@pytest.mark.parametrize(
    ("key", "age", "valid"),
    [
        (ADMIN_KEY, 0, True),
        (ADMIN_KEY, SESSION_SECONDS + 1, False),  # expired
        ("another-admin-key", 0, False),  # the admin key was rotated
    ],
)
def test_a_session_holds_only_under_its_key_until_expiry(key: str, age: int, valid: bool) -> None:
    token = issue_session(SecretStr(ADMIN_KEY), 1_000_000.0)
    assert session_valid(token, SecretStr(key), 1_000_000.0 + age) is valid


def test_repeated_wrong_keys_lock_the_login_out(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    url = bridge()
    for _ in range(10):
        assert httpx.post(f"{url}/admin/login", data={"key": "guess"}).status_code == 401
    locked = httpx.post(f"{url}/admin/login", data={"key": ADMIN_KEY})
    assert (locked.status_code, locked.headers["retry-after"]) == (429, "900")


def test_a_good_login_clears_earlier_failures(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    url = bridge()
    for _ in range(9):
        httpx.post(f"{url}/admin/login", data={"key": "guess"})
    assert httpx.post(f"{url}/admin/login", data={"key": ADMIN_KEY}).status_code == 303
    for _ in range(9):  # without the reset these would make 18 failures: locked out
        httpx.post(f"{url}/admin/login", data={"key": "guess"})
    assert httpx.post(f"{url}/admin/login", data={"key": ADMIN_KEY}).status_code == 303


def test_parallel_wrong_logins_are_throttled_past_the_limit(bridge: Callable[..., str]) -> None:
    url = bridge()

    async def guess_all() -> list[int]:
        async with httpx.AsyncClient(base_url=url) as client:
            guesses = [client.post("/admin/login", data={"key": "guess"}) for _ in range(40)]
            return [r.status_code for r in await asyncio.gather(*guesses)]

    statuses = asyncio.run(guess_all())
    assert (statuses.count(401), statuses.count(429)) == (
        ADMIN_KEY_ATTEMPTS,
        40 - ADMIN_KEY_ATTEMPTS,
    )


def test_wrong_header_keys_count_towards_the_lockout(bridge: Callable[..., str]) -> None:
    url = bridge()
    for _ in range(ADMIN_KEY_ATTEMPTS):
        httpx.get(f"{url}/admin/api/status", headers={"X-API-Key": "guess"})
    assert httpx.post(f"{url}/admin/login", data={"key": ADMIN_KEY}).status_code == 429


def test_the_right_header_key_is_refused_during_a_lockout(bridge: Callable[..., str]) -> None:
    url = bridge()
    for _ in range(ADMIN_KEY_ATTEMPTS):
        httpx.post(f"{url}/admin/login", data={"key": "guess"})
    locked = httpx.get(f"{url}/admin/api/status", headers=BEARER)
    assert (locked.status_code, locked.headers.get("retry-after")) == (
        429,
        str(ADMIN_KEY_LOCKOUT_SECONDS),
    )


def _login_through(url: str, proxy: str, **headers: str) -> httpx.Response:
    """A login whose connection comes from `proxy` (a loopback address), as a proxy's would."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=proxy)) as client:
        return client.post(f"{url}/admin/login", data={"key": ADMIN_KEY}, headers=headers)


def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(bridge: Callable[..., str]) -> None:
    url = bridge(PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS="127.0.0.2")
    response = _login_through(url, "127.0.0.2", **{"X-Forwarded-Proto": "https"})
    assert "; secure" in response.headers["set-cookie"].lower()


def test_an_untrusted_forwarded_proto_does_not_make_the_cookie_secure(
    bridge: Callable[..., str],
) -> None:
    url = bridge(PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS="127.0.0.2")
    response = _login_through(url, "127.0.0.3", **{"X-Forwarded-Proto": "https"})
    assert response.status_code == 303 and "secure" not in response.headers["set-cookie"].lower()
