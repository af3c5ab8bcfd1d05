"""The page's buttons: signing a service account in (against the Graph emulator), directory sync."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from core.queue import QUEUE_GRAPH, queue
from core.state import accounts
from emulator.control import ControlClient
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.server import EmulatorServer
from tests.core.conftest import make_site
from tests.emulator.conftest import control, emulator  # noqa: F401
from tests.webhook.admin.conftest import ADMIN_KEY, BEARER, T, form_token, logged_in
from webhook.app import create_app


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
            "/admin/sign-in",
            data={"tenant": T, "account": account, "csrf": form_token(client)},
            headers={"Origin": url},
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
            "/admin/sign-in",
            data={"tenant": T, "csrf": form_token(client)},
            headers={"Origin": "https://evil.example"},
        )
    assert response.status_code == 401


def test_a_sign_in_from_a_no_referrer_page_with_its_token_starts(
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
    tmp_path: Path,
    redis_url: str,
) -> None:
    """Chromium posts `Origin: null` from the page (Referrer-Policy: no-referrer)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = make_site(
        emulator, control, tmp_path, redis_url, public_base_url=url, admin_key=ADMIN_KEY
    )
    account = next(iter(site.accounts))
    with ServedApp(create_app(site.settings), port=port), logged_in(url) as client:
        response = client.post(
            "/admin/sign-in",
            data={"tenant": T, "account": account, "csrf": form_token(client)},
            headers={"Origin": "null"},
        )
    assert response.status_code == 303
    assert response.headers["location"].startswith(emulator.base_url)


def test_a_sign_in_without_the_form_token_is_refused_with_a_reason(
    bridge: Callable[..., str],
) -> None:
    url = bridge()
    with logged_in(url) as client:
        response = client.post("/admin/sign-in", data={"tenant": T}, headers={"Origin": url})
    assert (response.status_code, 'id="key"' in response.text) == (401, False)
    assert "did not come from the current status page" in response.text


def test_a_sign_in_with_another_sessions_token_is_refused(bridge: Callable[..., str]) -> None:
    url = bridge()
    with logged_in(url) as first, logged_in(url) as second:
        response = second.post("/admin/sign-in", data={"tenant": T, "csrf": form_token(first)})
    assert response.status_code == 401
    assert "did not come from the current status page" in response.text


def test_a_sign_in_after_the_session_ended_asks_to_sign_in_again(
    bridge: Callable[..., str],
) -> None:
    url = bridge()
    response = httpx.post(f"{url}/admin/sign-in", data={"tenant": T, "csrf": "x" * 64})
    assert response.status_code == 401
    assert "Your session has ended" in response.text


def test_directory_sync_with_the_session_needs_its_token(
    bridge: Callable[..., str], redis_client: redis.Redis
) -> None:
    url = bridge()
    with logged_in(url) as client:
        refused = client.post("/admin/api/tenants/contoso/directory-sync")
        queued = client.post(
            "/admin/api/tenants/contoso/directory-sync",
            headers={"X-CSRF-Token": form_token(client), "Origin": "null"},
        )
    assert (refused.status_code, queued.status_code) == (401, 202)
    assert "error" in refused.json()


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
