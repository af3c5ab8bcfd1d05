"""The status page's "Sign in" button in a real browser, through the Graph emulator's sign-in.

Chromium posts the page's forms with `Origin: null` (the page sends `Referrer-Policy:
no-referrer`), so this is the path the form token must carry on its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from playwright.sync_api import Browser, expect

from core.state import accounts
from emulator.control import ControlClient
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.server import EmulatorServer
from tests.browser.test_admin_page import ARTIFACTS, browser  # noqa: F401
from tests.core.conftest import make_site
from tests.emulator.conftest import control, emulator  # noqa: F401
from webhook.app import create_app

ADMIN_KEY = "browser-sign-in-key-0123456789abcdef"
T = "contoso"


def test_the_sign_in_button_brings_an_account_back_to_healthy(
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
    browser: Browser,  # noqa: F811
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
    accounts.mark_needs_sign_in(redis_client, T, account, "invalid_grant", time.time())
    posted_origins: list[str | None] = []
    with ServedApp(create_app(site.settings), port=port):
        # The emulator's HTTPS certificate comes from its own test CA.
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.on(
            "request",
            lambda r: (
                posted_origins.append(r.headers.get("origin"))
                if r.url.endswith("/admin/sign-in")
                else None
            ),
        )
        page.goto(url + "/admin")
        page.fill("#key", ADMIN_KEY)
        page.click("button[type=submit]")
        # The account's row of "Service accounts" (the problems table names it too).
        row = page.locator("tr", has=page.locator("form")).filter(has_text=account)
        token = row.locator("td").nth(1)
        expect(token).to_have_text("needs sign-in")

        row.get_by_role("button", name="Sign in").click()  # emulator -> form_post -> callback
        page.wait_for_url(url + "/oauth/callback")
        expect(page.locator("main h2")).to_have_text("Signed in")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "oauth-callback.png"), full_page=True)

        page.get_by_role("link", name="Back to the status page").click()
        expect(token).to_have_text("healthy")
        expect(row.get_by_role("button")).to_have_text("Sign in again")
        page.close()  # its live stream ends before the server does
    assert posted_origins == ["null"]  # what made the button fail before the form token
