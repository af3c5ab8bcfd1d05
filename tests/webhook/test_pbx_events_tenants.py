"""Per-tenant `/pbx/events` secrets: a tenant's secret signs only that tenant's events, and a
bridge-wide one (deprecated) only those of tenants without their own."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from core.errors import ConfigError
from core.settings import load_settings
from core.standard_webhooks import new_secret
from core.state import intake
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.webhook.conftest import stream_items
from tests.webhook.test_pbx_events import body, call, post, signed
from webhook.pbx_events import NOT_YOURS, legacy_sign

CONTOSO, CONTOSO_OLD, FABRIKAM, SHARED = new_secret(), new_secret(), new_secret(), new_secret()
LEGACY = "pbx-events-legacy-" + "s" * 32
FABRIKAM_TOML = (
    '\n[[tenants]]\nname = "fabrikam"\ntenant_id = "22222222-2222-3333-4444-555555555555"'
    '\nclient_id = "c"\npublic_base_url = "https://bridge.example.com"\n'
)
FABRIKAM_CLIENT = {secret_env("fabrikam", "CLIENT_SECRET"): "s"}


def two_tenants(serve: Callable[..., ServedApp], **env: str) -> httpx.Client:
    """contoso with its own two secrets (current, older); fabrikam with `env`'s."""
    served = serve(
        extra=FABRIKAM_TOML,
        **{secret_env("contoso", "PBX_EVENTS_SECRET"): f"{CONTOSO},{CONTOSO_OLD}"},
        **FABRIKAM_CLIENT,
        **env,
    )
    return httpx.Client(base_url=served.url)


def test_a_tenants_own_secret_signs_its_events(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso) as web:
        content = body(call())
        assert post(web, content, signed(content, secrets=(CONTOSO,))).status_code == 202
    [entry] = stream_items(redis_client)
    assert (entry["tenant"], entry["item"]) == ("contoso", call())


def test_a_tenants_older_secret_still_verifies_and_is_counted(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso) as web:
        content = body(call())
        assert post(web, content, signed(content, secrets=(CONTOSO_OLD,))).status_code == 202
    assert intake.counters(redis_client).get("pbx_events_previous_secret") == 1


def test_a_tenants_secret_does_not_sign_another_tenants_events(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    """The finding: contoso's PBX reported a call of fabrikam's user, and Teams showed it."""
    fabrikam_secret = {secret_env("fabrikam", "PBX_EVENTS_SECRET"): FABRIKAM}
    with two_tenants(serve_contoso, **fabrikam_secret) as web:
        content = body(call(user="fabrikam-ceo"), tenant="fabrikam")
        response = post(web, content, signed(content, secrets=(CONTOSO,)))
    assert response.status_code == 401
    assert "does not sign events of the tenant it names" in response.json()["error"]
    assert stream_items(redis_client) == []


@pytest.mark.parametrize("tenant", ["fabrikam", "nobody"])
def test_a_tenants_secret_learns_nothing_of_other_tenant_names(
    serve_contoso: Callable[..., ServedApp], tenant: str
) -> None:
    fabrikam_secret = {secret_env("fabrikam", "PBX_EVENTS_SECRET"): FABRIKAM}
    with two_tenants(serve_contoso, **fabrikam_secret) as web:
        content = body(call(), tenant=tenant)
        response = post(web, content, signed(content, secrets=(CONTOSO,)))
    assert (response.status_code, response.json()) == (401, {"error": NOT_YOURS})


def test_a_tenants_secret_does_not_sign_for_a_tenant_without_secrets(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso) as web:
        content = body(call(), tenant="fabrikam")
        assert post(web, content, signed(content, secrets=(CONTOSO,))).status_code == 401
    assert stream_items(redis_client) == []


def test_the_shared_secret_does_not_sign_for_a_tenant_with_its_own(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso, PRESENCE_BRIDGE_PBX_EVENTS_SECRET=SHARED) as web:
        content = body(call())
        assert post(web, content, signed(content, secrets=(SHARED,))).status_code == 401
    assert stream_items(redis_client) == []


def test_the_shared_secret_still_signs_for_a_tenant_without_its_own_and_is_counted(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso, PRESENCE_BRIDGE_PBX_EVENTS_SECRET=SHARED) as web:
        content = body(call(), tenant="fabrikam")
        assert post(web, content, signed(content, secrets=(SHARED,))).status_code == 202
    assert [e["tenant"] for e in stream_items(redis_client)] == ["fabrikam"]
    assert intake.counters(redis_client).get("pbx_events_shared_secret") == 1


def test_the_legacy_secret_does_not_sign_for_a_tenant_with_its_own(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso, PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET=LEGACY) as web:
        content, stamp = body(call()), str(int(time.time()))
        headers = {
            "X-Presence-Bridge-Timestamp": stamp,
            "X-Presence-Bridge-Signature": legacy_sign(LEGACY.encode(), stamp, content),
        }
        assert web.post("/pbx/events", content=content, headers=headers).status_code == 401
    assert stream_items(redis_client) == []


def test_only_the_events_fields_are_queued(
    serve_contoso: Callable[..., ServedApp], redis_client: redis.Redis
) -> None:
    with two_tenants(serve_contoso) as web:
        event = {**call(), "note": {"nested": ["x"] * 1000}}
        content = orjson.dumps({"tenant": "contoso", "events": [event]})
        assert post(web, content, signed(content, secrets=(CONTOSO,))).status_code == 202
    assert stream_items(redis_client)[0]["item"] == call()


def settings_env(tmp_path: Path, **env: str) -> dict[str, str]:
    toml = tenant_toml("contoso") + FABRIKAM_TOML
    return write_env(tmp_path, toml, **{secret_env("contoso", "CLIENT_SECRET"): "s"}, **env)


def test_a_tenant_secret_is_read_from_its_variable(tmp_path: Path) -> None:
    variable = secret_env("fabrikam", "PBX_EVENTS_SECRET")
    settings = load_settings(settings_env(tmp_path, **FABRIKAM_CLIENT, **{variable: FABRIKAM}))
    fabrikam = settings.tenant("fabrikam")
    assert fabrikam is not None and fabrikam.pbx_events_secret is not None
    assert fabrikam.pbx_events_secret.get_secret_value() == FABRIKAM
    assert FABRIKAM not in repr(settings)


def test_a_bad_tenant_secret_is_named_by_position_never_shown(tmp_path: Path) -> None:
    variable = secret_env("fabrikam", "PBX_EVENTS_SECRET")
    env = settings_env(tmp_path, **FABRIKAM_CLIENT, **{variable: f"{FABRIKAM},not-a-secret"})
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "pbx_events_secret: Value error, secret 2 of 2 does not start with" in str(caught.value)
    assert "not-a-secret" not in str(caught.value)


def test_a_secret_written_in_the_tenants_file_is_refused(tmp_path: Path) -> None:
    toml = tenant_toml("contoso", extra=f'pbx_events_secret = "{CONTOSO}"')
    env = write_env(tmp_path, toml, **{secret_env("contoso", "CLIENT_SECRET"): "s"})
    with pytest.raises(ConfigError, match="secrets belong in the environment"):
        load_settings(env)


@pytest.mark.parametrize(
    "holder", ["PRESENCE_BRIDGE_PBX_EVENTS_SECRET", secret_env("contoso", "PBX_EVENTS_SECRET")]
)
def test_a_tenant_secret_held_elsewhere_too_is_refused(tmp_path: Path, holder: str) -> None:
    variable = secret_env("fabrikam", "PBX_EVENTS_SECRET")
    env = settings_env(tmp_path, **FABRIKAM_CLIENT, **{variable: FABRIKAM, holder: FABRIKAM})
    with pytest.raises(ConfigError, match="each tenant needs its own") as caught:
        load_settings(env)
    assert FABRIKAM not in str(caught.value)
