"""What an operator sees of one PBX user: its Teams users, state, desired and applied profile.

Read-only and cheap, like `core.status`: Redis and the settings only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from core import keys
from core.settings import TenantSettings
from core.state import directory, links, presence

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


def resolve_pbx_users(redis: Redis, tenant: TenantSettings, name: str) -> list[str]:
    """PBX users meant by `name`: a PBX username, a linked Graph id or a Graph UPN."""
    known = redis.hexists(keys.profile_state(tenant.name), name) or redis.hexists(
        keys.desired(tenant.name), name
    )
    if known or any(u.username == name for u in tenant.pbx_users):
        return [name]
    static = links.static_links(tenant)
    if links.graph_ids_of(redis, tenant.name, name, static):
        return [name]
    gid = (directory.find_by_upn(redis, tenant.name, name) if "@" in name else None) or name
    return links.pbx_users_of(redis, tenant.name, gid, static)


def user_status(
    redis: Redis, tenant: TenantSettings, pbx_user: str, events: int = RECENT_EVENTS
) -> UserStatus:
    name = tenant.name
    graph_ids = links.graph_ids_of(redis, name, pbx_user, links.static_links(tenant))
    pipe = redis.pipeline(transaction=False)
    pipe.hget(keys.profile_state(name), pbx_user)
    pipe.hget(keys.desired(name), pbx_user)
    pipe.hget(keys.applied(name), pbx_user)
    pipe.hget(keys.builtin_profiles(name), pbx_user)
    pipe.hget(keys.dead_letters(name), pbx_user)
    pipe.lrange(keys.user_events(name, pbx_user), 0, events - 1)
    if graph_ids:
        presence.queue_last(pipe, name, graph_ids)
    state, desired, applied, builtin, dead, recent, *last = pipe.execute()
    teams = {
        gid: dataclasses.asdict(seen)
        for gid, seen in zip(graph_ids, presence.last_from(last[0]) if last else [], strict=True)
        if seen is not None
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
