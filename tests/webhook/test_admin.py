"""The status page's routes over real HTTP: access, session cookie, JSON, escaping, SSE, sign-in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.queue import QUEUE_GRAPH, queue
from core.settings import MappingSettings, load_settings
from core.state import accounts
from core.state import subscriptions as sub_state
from core.state.subscriptions import SubscriptionRecord
from emulator.control import ControlClient
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from emulator.server import EmulatorServer
from tests.core.conftest import make_site
from tests.emulator.conftest import control, emulator  # noqa: F401
from webhook.admin.sessions import COOKIE, SESSION_SECONDS, issue_session, session_valid
from webhook.app import create_app
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import PresenceUpdate, process

ADMIN_KEY = "admin-key-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}
T = "contoso"
USERS = 'pbx_users = [{username = "alice", graph_id = "g-alice"}, {username = "bob"}]\n'
RULES = compile_rules(MappingSettings(preset="simple"))


@pytest.fixture
def bridge(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., str]]:
    """Serve the real app for a tenants file; returns its base URL."""
    served: list[ServedApp] = []

    def start(
        *, admin_key: str | None = ADMIN_KEY, users: str = USERS, pbx: str = 'adapter = "builtin"'
    ) -> str:
        env = {
            "PRESENCE_BRIDGE_REDIS_URL": redis_url,
            "PRESENCE_BRIDGE_CACHE_KEY": Fernet.generate_key().decode(),
            secret_env(T, "CLIENT_SECRET"): "client-secret",
        }
        if admin_key is not None:
            env["PRESENCE_BRIDGE_ADMIN_API_KEY"] = admin_key
        extra = 'service_accounts = ["svc@contoso.test"]\n' + users
        settings = load_settings(write_env(tmp_path, tenant_toml(T, extra=extra, pbx=pbx), **env))
        app = ServedApp(create_app(settings)).__enter__()
        served.append(app)
        return app.url

    yield start
    for app in served:
        app.__exit__(None, None, None)


@contextmanager
def logged_in(url: str) -> Iterator[httpx.Client]:
    """A browser-like client holding a session (the cookie jar keeps it)."""
    with httpx.Client(base_url=url) as client:
        response = client.post("/admin/login", data={"key": ADMIN_KEY})
        assert response.status_code == 303, response.text
        yield client


def run_pipeline(client: redis.Redis, graph_id: str, availability: str, sequence: str) -> None:
    """The worker's own pipeline and delivery, with the builtin adapter (it writes the stream)."""
    result = process(
        client,
        T,
        RULES,
        0.0,
        [PresenceUpdate(graph_id, availability, availability, sequence)],
        static_links={"g-alice": ["alice"]},
    )
    deliver(client, T, BuiltinAdapter(client, T), [c.user for c in result.changes])


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


def test_the_status_json_takes_the_bearer_key(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    run_pipeline(redis_client, "g-alice", "Busy", "0001")
    data = httpx.get(bridge() + "/admin/api/status", headers=BEARER).json()
    row = next(r for r in data["tenants"][0]["user_rows"] if r["user"] == "alice")
    assert (row["availability"], row["profile"], row["graph_ids"]) == ("Busy", "Busy", ["g-alice"])


def test_the_page_shows_accounts_and_subscriptions(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    now = time.time()
    sub_state.save(redis_client, SubscriptionRecord(
        "sub-1", T, sub_state.client_state_digest("state" * 8), account="svc@contoso.test",
        expires_at=now + 3600, renewed_at=now,
    ))  # fmt: skip
    page = httpx.get(bridge() + "/admin", headers=BEARER).text
    assert "svc@contoso.test" in page and "not signed in" in page and "sub-1" in page


def test_values_are_escaped_in_the_page(bridge: Callable[..., str]) -> None:
    url = bridge(users='pbx_users = [{username = "<script>alert(1)</script>"}]\n')
    page = httpx.get(url + "/admin", headers=BEARER).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_forbids_framing_and_foreign_scripts(bridge: Callable[..., str]) -> None:
    headers = httpx.get(bridge() + "/admin", headers=BEARER).headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'nonce-" in csp
    assert headers["cache-control"] == "no-store"


def next_event(stream: Iterator[str]) -> dict[str, object]:
    for line in stream:
        if line.startswith("data: "):
            return dict(orjson.loads(line[6:]))
    raise AssertionError("the event stream ended")


@pytest.mark.parametrize("pbx", ['adapter = "builtin"', 'adapter = "http"'])
def test_a_presence_change_reaches_the_event_stream(
    bridge: Callable[..., str], redis_client: redis.Redis, pbx: str
) -> None:
    """builtin: its profile stream wakes the feed; other adapters: the periodic comparison."""
    url = bridge(pbx=pbx)
    with (
        httpx.Client(base_url=url, headers=BEARER, timeout=10) as client,
        client.stream("GET", "/admin/events") as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed: the snapshot is taken
        run_pipeline(redis_client, "g-alice", "DoNotDisturb", "0001")
        event = next_event(lines)
    assert event == {
        "tenant": T,
        "user": "alice",
        "profile": "Do Not Disturb",
        "availability": "DoNotDisturb",
        "activity": "DoNotDisturb",
    }


def test_the_sign_in_button_signs_a_service_account_in(
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = make_site(
        emulator, control, tmp_path, redis_url, public_base_url=url, admin_key=ADMIN_KEY
    )
    account = next(iter(site.accounts))
    with ServedApp(create_app(site.settings), port=port), logged_in(url) as client:
        started = client.post(
            "/admin/sign-in", data={"tenant": T, "account": account}, headers={"Origin": url}
        )
        assert started.status_code == 303
        control.sign_in(started.headers["location"])  # the browser at the identity platform
        page = client.get("/admin").text
    assert accounts.read(redis_client, T, account) is not None
    assert f'{account}</td><td><span class="badge ok">healthy' in page


def test_a_sign_in_from_another_site_is_refused(bridge: Callable[..., str]) -> None:
    url = bridge()
    with logged_in(url) as client:
        response = client.post(
            "/admin/sign-in", data={"tenant": T}, headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 401


def test_directory_sync_on_demand_queues_the_job(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    url = bridge()
    response = httpx.post(
        f"{url}/admin/api/tenants/contoso/directory-sync?full=true", headers=BEARER
    )
    [job] = queue(redis_client, QUEUE_GRAPH).jobs
    assert response.status_code == 202
    assert (job.func_name, list(job.args)) == ("workers.jobs.sync_directory", ["contoso", True])


def test_directory_sync_refuses_without_a_key(bridge: Callable[..., str]) -> None:
    url = bridge()
    assert httpx.post(f"{url}/admin/api/tenants/contoso/directory-sync").status_code == 401


def test_directory_sync_of_an_unknown_tenant_is_a_404(bridge: Callable[..., str]) -> None:
    url = bridge()
    response = httpx.post(f"{url}/admin/api/tenants/nope/directory-sync", headers=BEARER)
    assert response.status_code == 404


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
