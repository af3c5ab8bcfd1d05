"""Builds a tenant's PBX adapter from its settings; keeps adapters' own state in Redis.

The one module that knows the adapter kinds by name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, ValidationError
from redis import Redis

from core.errors import BridgeError
from core.settings import TenantSettings
from core.state import pbx
from workers.pbx import http
from workers.pbx.asterisk import AsteriskAdapter
from workers.pbx.base import PbxAdapter, Stateful
from workers.pbx.builtin import BuiltinAdapter
from workers.pbx.sip import SipAdapter


def build_adapter(
    tenant: TenantSettings, redis: Redis, cache_key: SecretStr | None = None
) -> PbxAdapter:
    """`cache_key` (ProcessSettings.cache_key) seals the PBX token the `http` adapter shares."""
    kind = tenant.pbx.adapter
    if kind == "builtin":
        return BuiltinAdapter(redis, tenant.name)
    if kind == "http":
        return http.build(tenant.pbx, tenant.name, redis, cache_key, tenant.pbx_extensions())
    if kind == "asterisk":
        return AsteriskAdapter(
            tenant.pbx.asterisk_options, tenant.pbx.secret, tenant.pbx_extensions()
        )
    sip = SipAdapter(tenant.pbx.options, tenant.pbx.secret)
    state = pbx.adapter_state(redis, tenant.name)
    if state:
        sip.import_state(state)
    return sip


def save_state(adapter: PbxAdapter, tenant: str, redis: Redis) -> None:
    """SIP publications must survive a worker restart: a lost ETag shows stale state."""
    if isinstance(adapter, Stateful):
        pbx.save_adapter_state(redis, tenant, adapter.export_state())


Probe = tuple[Literal["ok", "skip", "fail"], str]


def probe(tenant: TenantSettings, redis: Redis | None, cache_key: SecretStr | None = None) -> Probe:
    """What `presence-bridge check` reports about the tenant's PBX; reads, never writes."""
    kind = tenant.pbx.adapter
    if kind == "sip":
        return "skip", "sip: not probed (no OPTIONS); failed PUBLISHes show as dead letters"
    if redis is None:
        return "skip", f"{kind}: needs Redis"
    if kind == "builtin":
        return "ok", "builtin: profiles are served from Redis by the web process"
    try:
        adapter = build_adapter(tenant, redis, cache_key)
    except (BridgeError, ValidationError, ValueError) as exc:
        return "fail", f"{kind}: unusable options: {exc}"
    try:
        listed = adapter.list_users()
        if listed is not None:
            return "ok", f"{kind}: the PBX lists {len(listed)} user(s)"
        if not tenant.pbx_users:
            return "skip", f"{kind}: no list_users action and no pbx_users to read"
        user = tenant.pbx_users[0].username
        profile = adapter.read_profile(user)
        if profile is None:
            return "skip", f"{kind}: no list_users or read_profile action to probe with"
        return "ok", f"{kind}: {user} shows {profile!r}"
    except BridgeError as exc:
        return "fail", f"{kind}: {exc}"
    finally:
        adapter.close()
