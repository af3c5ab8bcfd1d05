"""The status page and its JSON: what they show, escaping, security headers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis

from core.state import subscriptions as sub_state
from core.state.subscriptions import SubscriptionRecord
from tests.webhook.admin.conftest import BEARER, T, run_pipeline


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
