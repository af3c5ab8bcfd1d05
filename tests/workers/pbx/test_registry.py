"""The registry builds each tenant's adapter from its settings, extensions from pbx_users."""

from __future__ import annotations

from typing import Any

import redis
from pydantic import SecretStr

from core.settings import PbxSettings, PbxUser, TenantSettings
from emulator.ami.server import AmiServer
from tests.ami_fixtures import SECRET, endpoint_options
from tests.pbx_server import PbxServer
from workers.pbx.asterisk import AsteriskAdapter
from workers.pbx.base import ProfileChange
from workers.pbx.registry import build_adapter, probe

USERS = [PbxUser(username="alice", extension="200"), PbxUser(username="201")]


def tenant(pbx: PbxSettings) -> TenantSettings:
    return TenantSettings(
        name="acme",
        tenant_id="11111111-2222-3333-4444-555555555555",
        client_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        client_secret=SecretStr("s"),
        public_base_url="https://bridge.example.com",  # type: ignore[arg-type]
        pbx=pbx,
        pbx_users=USERS,
    )


def asterisk(server: AmiServer, **options: Any) -> TenantSettings:
    return tenant(
        PbxSettings(
            adapter="asterisk",
            options=endpoint_options(server, **options),
            secret=SecretStr(SECRET),
        )
    )


def test_an_asterisk_tenant_gets_the_asterisk_adapter_with_its_extensions(
    ami_server: AmiServer, redis_client: redis.Redis
) -> None:
    adapter = build_adapter(asterisk(ami_server), redis_client)
    try:
        assert isinstance(adapter, AsteriskAdapter)
        adapter.apply_profile(ProfileChange("alice", "Teams Meeting"))
        adapter.apply_profile(ProfileChange("201", "Away"))  # no extension: the username
    finally:
        adapter.close()
    db = ami_server.db()
    assert db[("DND", "200")] == "YES"
    assert db[("CustomPresence", "201")] == "away,,Away"


def test_the_check_probe_reads_the_first_user_back(
    ami_server: AmiServer, redis_client: redis.Redis
) -> None:
    ami_server.db_put("DND", "200", "YES")
    status, message = probe(asterisk(ami_server, presence=False), redis_client)
    assert (status, message) == ("ok", "asterisk: alice shows 'Do Not Disturb'")
    assert not [a for a in ami_server.actions() if a.action in ("DBPut", "DBDel", "Setvar")]


def test_http_extension_comes_from_the_tenants_file(
    server: PbxServer, redis_client: redis.Redis
) -> None:
    apply = {"method": "PUT", "url": "/generic/ext/$extension", "json": {"p": "$profile"}}
    pbx = PbxSettings(
        adapter="http", options={"base_url": server.url, "actions": {"apply_profile": apply}}
    )
    adapter = build_adapter(tenant(pbx), redis_client)
    try:
        adapter.apply_profile(ProfileChange("alice", "Away"))
        adapter.apply_profile(ProfileChange("201", "Away"))
    finally:
        adapter.close()
    assert [r.path for r in server.requests] == ["/generic/ext/200", "/generic/ext/201"]
