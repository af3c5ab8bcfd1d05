"""The status page in a real browser: Debian's headless Chromium driven by Playwright.

The bridge is the real app under uvicorn against the test Redis. The first test makes the
presence change with the worker's own pipeline; the second drives it for real from the Graph
emulator through the webhook and a worker process. Either way the page must change without
a reload.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.settings import MappingSettings, load_settings
from core.state import accounts, delivery
from core.state import subscriptions as sub_state
from core.state.accounts import AccountHealth, AccountStatus
from core.state.delivery import Desired
from core.state.subscriptions import SubscriptionRecord
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.e2e.conftest import ADMIN_KEY as E2E_ADMIN_KEY
from tests.e2e.conftest import BridgeFactory
from webhook.app import create_app
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import PresenceUpdate, process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "browser-admin-key-0123456789abcdef"
T = "contoso"
PEOPLE = {"alice": "g-alice", "bob": "g-bob", "carol": "g-carol", "dave": "g-dave"}
RULES = compile_rules(MappingSettings(preset="simple"))


def run_pipeline(
    client: redis.Redis, graph_id: str, availability: str, activity: str, sequence: str
) -> None:
    """What a worker does with a presence read from Graph: decide, then apply it."""
    static = {g: [u] for u, g in PEOPLE.items()}
    result = process(
        client,
        T,
        RULES,
        0.0,
        [PresenceUpdate(graph_id, availability, activity, sequence)],
        static_links=static,
    )
    deliver(client, T, BuiltinAdapter(client, T), [c.user for c in result.changes])


def seed(client: redis.Redis) -> None:
    """A tenant in mid-life: presence for most users, a subscription, a healthy account."""
    run_pipeline(client, "g-alice", "Available", "Available", "0001")
    run_pipeline(client, "g-bob", "Busy", "InACall", "0001")
    run_pipeline(client, "g-carol", "Away", "Away", "0001")
    now = time.time()
    sub_state.save(
        client,
        SubscriptionRecord(
            "9f3c2a7e-5b1d-4c8e-a0f2-6d7e8b9c0a1b",
            T,
            sub_state.client_state_digest("s" * 40),
            account="svc@contoso.test",
            user_ids=tuple(PEOPLE.values()),
            expires_at=now + 2 * 3600 + 125,
            renewed_at=now,
        ),
    )
    refused = Desired("dave", "Away", "Away", "Away", 1, now)
    delivery.dead_letter(client, T, refused, "PBX answered 404: no such user")
    accounts.write(
        client,
        T,
        AccountHealth(
            "svc@contoso.test",
            AccountStatus.HEALTHY,
            signed_in_at=now - 86400,
            last_refresh=now - 600,
            changed_at=now - 86400,
        ),
    )


@pytest.fixture
def bridge_url(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Iterator[str]:
    users = ", ".join(f'{{username = "{u}", graph_id = "{g}"}}' for u, g in PEOPLE.items())
    extra = f'service_accounts = ["svc@contoso.test"]\npbx_users = [{users}]\n'
    env = write_env(
        tmp_path,
        tenant_toml(T, extra=extra),
        PRESENCE_BRIDGE_REDIS_URL=redis_url,
        PRESENCE_BRIDGE_ADMIN_API_KEY=ADMIN_KEY,
        PRESENCE_BRIDGE_CACHE_KEY=Fernet.generate_key().decode(),
        **{secret_env(T, "CLIENT_SECRET"): "client-secret"},
    )
    seed(redis_client)
    with ServedApp(create_app(load_settings(env))) as served:
        yield served.url


@pytest.fixture
def browser() -> Iterator[Browser]:
    # The sync API runs its own event loop in this thread: the test itself is plain sync code.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def user_row(page: Page, user: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-tenant="{T}"][data-user="{user}"]')


def test_the_page_needs_the_key_then_follows_presence_live(
    bridge_url: str, browser: Browser, redis_client: redis.Redis
) -> None:
    page = browser.new_page(viewport={"width": 1320, "height": 900})
    refused = page.goto(bridge_url + "/admin")
    assert refused is not None and refused.status == 401
    expect(page.locator("section.tenant")).to_have_count(0)

    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page.locator("section.tenant h2")).to_have_text(T)
    expect(user_row(page, "bob").locator(".profile")).to_have_text("Busy")
    expect(page.locator("#live")).to_have_text("live")  # the SSE stream is open

    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    run_pipeline(redis_client, "g-alice", "DoNotDisturb", "Presenting", "0002")
    alice = user_row(page, "alice")
    expect(alice.locator(".profile")).to_have_text("Do Not Disturb")
    expect(alice.locator(".presence")).to_have_text("DoNotDisturb · Presenting")
    assert page.evaluate("window.sameDocument") is True

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)


def test_a_teams_change_in_the_emulator_appears_without_a_reload(
    bridge_factory: BridgeFactory, browser: Browser
) -> None:
    """The whole path: emulator presence -> Graph notification -> webhook -> worker -> page."""
    bridge = bridge_factory(users=("alice", "bob"))
    page = browser.new_page(viewport={"width": 1320, "height": 900})
    page.goto(bridge.web_url + "/admin")
    page.fill("#key", E2E_ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    bridge.set_teams("alice", "DoNotDisturb", "DoNotDisturb")

    alice = page.locator('tr[data-tenant="contoso"][data-user="alice"]')
    expect(alice.locator(".profile")).to_have_text("Do Not Disturb", timeout=30_000)
    expect(alice.locator(".presence")).to_have_text("DoNotDisturb")  # same activity: shown once
    assert page.evaluate("window.sameDocument") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-page-emulator.png"), full_page=True)
