"""What an operator sees of one PBX user: its Teams users, state, desired and applied profile.

Read-only and cheap, like `core.status.system`: Redis and the settings only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from redis import Redis

from core.settings import TenantSettings
from core.state import delivery, directory, links, pbx, presence, profiles
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


def resolve_pbx_users(redis: Redis, tenant: TenantSettings, name: str) -> list[str]:
    """PBX users meant by `name`: a PBX username, a linked Graph id or a Graph UPN."""
    known = profiles.exists(redis, tenant.name, name) or delivery.has_desired(
        redis, tenant.name, name
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
    profiles.queue_load(pipe, name, [pbx_user])
    delivery.queue_load(pipe, name, [pbx_user])
    pbx.queue_builtin_profile(pipe, name, pbx_user)
    profiles.queue_recent_events(pipe, name, pbx_user, events)
    if graph_ids:
        presence.queue_last(pipe, name, graph_ids)
    state, desired, applied, dead, builtin, recent, *last = pipe.execute()
    stored = profiles.states_from([pbx_user], state).get(pbx_user)
    record = delivery.deliveries_from([pbx_user], desired, applied, dead)[pbx_user]
    served = BuiltinProfile.from_bytes(builtin, pbx_user)
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
        profile_state=None if stored is None else stored.to_dict(),
        desired=None if record.desired is None else record.desired.to_dict(),
        applied_version=record.applied,
        pbx_profile=None if served is None else served.to_dict(),
        dead_letter=None if record.dead is None else record.dead.to_dict(),
        events=profiles.events_from(recent),
        pending=record.pending,
        in_sync=not record.behind,
    )
