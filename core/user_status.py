"""What an operator sees of one PBX user: its Teams users, state, desired and applied profile.

Read-only and cheap, like `core.status`: Redis and the settings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from core import keys
from core.settings import TenantSettings
from core.state import delivery, pbx, profiles
from core.state.pbx import BuiltinProfile

RECENT_EVENTS = 20


@dataclass(frozen=True)
class UserStatus:
    tenant: str
    pbx_user: str
    graph_ids: list[str]
    teams: dict[str, dict[str, Any]]  # graph id -> last presence seen
    profile_state: dict[str, Any] | None
    desired: dict[str, Any] | None
    applied_version: int
    pbx_profile: dict[str, Any] | None  # as the builtin adapter serves it
    dead_letter: dict[str, Any] | None
    events: list[dict[str, Any]]
    pending: bool = False  # a delivery is due (`core.state.delivery.Delivery.pending`)
    in_sync: bool = True  # the PBX has the desired version


def _json(raw: bytes | None) -> Any:
    return orjson.loads(raw) if raw else None


def linked_graph_ids(redis: Redis, tenant: TenantSettings, pbx_user: str) -> list[str]:
    """Graph users that drive `pbx_user`: directory links (scanned) and static links."""
    found = {u.graph_id for u in tenant.pbx_users if u.username == pbx_user and u.graph_id}
    for gid, raw in redis.hscan_iter(keys.links(tenant.name)):
        if pbx_user in orjson.loads(raw):
            found.add(gid.decode())
    return sorted(found)


def resolve_pbx_users(redis: Redis, tenant: TenantSettings, name: str) -> list[str]:
    """PBX users meant by `name`: a PBX username, a linked Graph id or a Graph UPN."""
    known = profiles.exists(redis, tenant.name, name) or delivery.has_desired(
        redis, tenant.name, name
    )
    if known or any(u.username == name for u in tenant.pbx_users):
        return [name]
    if linked_graph_ids(redis, tenant, name):
        return [name]
    gid = name
    if "@" in name:
        wanted = name.lower()
        for candidate, raw in redis.hscan_iter(keys.directory_users(tenant.name)):
            if str(orjson.loads(raw).get("userPrincipalName", "")).lower() == wanted:
                gid = candidate.decode()
                break
    linked = _json(redis.hget(keys.links(tenant.name), gid))  # type: ignore[arg-type]
    static = [u.username for u in tenant.pbx_users if u.graph_id == gid]
    return sorted(set(linked or []) | set(static))


def user_status(
    redis: Redis, tenant: TenantSettings, pbx_user: str, events: int = RECENT_EVENTS
) -> UserStatus:
    name = tenant.name
    graph_ids = linked_graph_ids(redis, tenant, pbx_user)
    pipe = redis.pipeline(transaction=False)
    profiles.queue_load(pipe, name, [pbx_user])
    delivery.queue_load(pipe, name, [pbx_user])
    pbx.queue_builtin_profile(pipe, name, pbx_user)
    profiles.queue_recent_events(pipe, name, pbx_user, events)
    if graph_ids:
        pipe.hmget(keys.presence(name), graph_ids)
    state, desired, applied, dead, builtin, recent, *presence = pipe.execute()
    stored = profiles.states_from([pbx_user], state).get(pbx_user)
    record = delivery.deliveries_from([pbx_user], desired, applied, dead)[pbx_user]
    served = BuiltinProfile.from_bytes(builtin, pbx_user)
    teams = {
        gid: orjson.loads(raw)
        for gid, raw in zip(graph_ids, presence[0] if presence else [], strict=False)
        if raw
    }
    return UserStatus(
        tenant=name,
        pbx_user=pbx_user,
        graph_ids=graph_ids,
        teams=teams,
        profile_state=None if stored is None else stored.to_dict(),
        desired=None if record.desired is None else record.desired.to_dict(),
        applied_version=record.applied,
        pbx_profile=None if served is None else served.to_dict(),
        dead_letter=None if record.dead is None else record.dead.to_dict(),
        events=profiles.events_from(recent),
        pending=record.pending,
        in_sync=not record.behind,
    )
