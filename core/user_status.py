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

    @property
    def in_sync(self) -> bool:
        return self.desired is None or int(self.desired["version"]) <= self.applied_version


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
    known = redis.hexists(keys.profile_state(tenant.name), name) or redis.hexists(
        keys.desired(tenant.name), name
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
    pipe.hget(keys.profile_state(name), pbx_user)
    pipe.hget(keys.desired(name), pbx_user)
    pipe.hget(keys.applied(name), pbx_user)
    pipe.hget(keys.builtin_profiles(name), pbx_user)
    pipe.hget(keys.dead_letters(name), pbx_user)
    pipe.lrange(keys.user_events(name, pbx_user), 0, events - 1)
    if graph_ids:
        pipe.hmget(keys.presence(name), graph_ids)
    state, desired, applied, builtin, dead, recent, *presence = pipe.execute()
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
        profile_state=_json(state),
        desired=_json(desired),
        applied_version=int(applied or 0),
        pbx_profile=_json(builtin),
        dead_letter=_json(dead),
        events=[orjson.loads(e) for e in recent],
    )
