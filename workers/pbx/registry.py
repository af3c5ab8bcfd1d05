"""Builds a tenant's PBX adapter from its settings; keeps adapters' own state in Redis."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from redis import Redis

from core.settings import TenantSettings
from core.state import pbx
from workers.pbx import http
from workers.pbx.base import PbxAdapter
from workers.pbx.builtin import BuiltinAdapter
from workers.pbx.sip import SipAdapter


def build_adapter(tenant: TenantSettings, redis: Redis,
                  cache_key: SecretStr | None = None) -> PbxAdapter:
    """`cache_key` (ProcessSettings.cache_key) seals the PBX token the `http` adapter shares."""
    kind = tenant.pbx.adapter
    if kind == "builtin":
        return BuiltinAdapter(redis, tenant.name)
    if kind == "http":
        return http.build(tenant.pbx, tenant.name, redis, cache_key)
    sip = SipAdapter(tenant.pbx.options, tenant.pbx.secret)
    state = pbx.adapter_state(redis, tenant.name)
    if state:
        sip.import_state(state)
    return sip


def save_state(adapter: PbxAdapter, tenant: str, redis: Redis) -> None:
    """SIP publications must survive a worker restart: a lost ETag shows stale state."""
    export = getattr(adapter, "export_state", None)
    if export is not None:
        state: Any = export()
        pbx.save_adapter_state(redis, tenant, state)
