"""What the admin page shows: `core.status.system`'s model plus, per tenant, the user table.

The user table lists each PBX user with its Teams presence and profile, and the tenant's
recent transitions; `webhook.admin.view` renders it.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from core.settings import Settings, TenantSettings
from core.state import delivery, directory, links, profiles
from core.state.profiles import ProfileState
from core.status import system

MAX_USERS = 500  # rows per tenant; the CLI's `users show` reaches the rest
EVENTS_PER_USER = 4
TRANSITIONS_SHOWN = 15


def page_model(redis: Redis, settings: Settings, now: float) -> dict[str, Any]:
    """The bridge's status as JSON, each tenant with its user table and recent transitions."""
    data: dict[str, Any] = system.as_json(system.bridge_status(redis, settings, now=now))
    for tenant in data["tenants"]:
        configured = settings.tenant(tenant["name"])
        if configured is not None:  # always: bridge_status lists configured tenants only
            tenant.update(user_table(redis, configured))
    return data


def user_table(redis: Redis, tenant: TenantSettings) -> dict[str, Any]:
    """PBX users (configured, linked or with a state), their presence, profile and transitions."""
    name = tenant.name
    drivers = links.all_graph_ids(redis, name, links.static_links(tenant))  # pbx user -> graph ids
    for u in tenant.pbx_users:
        drivers.setdefault(u.username, [])
    pipe = redis.pipeline(transaction=False)
    profiles.queue_users(pipe, name)
    [state_users] = pipe.execute()
    for user in profiles.users_from(state_users):
        drivers.setdefault(user, [])
    users = sorted(drivers)[:MAX_USERS]
    linked = sum(1 for graph_ids in drivers.values() if graph_ids)
    if not users:
        return {"user_count": 0, "linked_count": 0, "user_rows": [], "transitions": []}
    gids = sorted({g for u in users for g in drivers[u]})
    pipe = redis.pipeline(transaction=False)
    profiles.queue_load(pipe, name, users)
    delivery.queue_load(pipe, name, users)
    looked_up = gids or ["-"]  # HMGET needs a field; no Graph id is "-"
    directory.queue_users(pipe, name, looked_up)
    for user in users:
        profiles.queue_recent_events(pipe, name, user, EVENTS_PER_USER)
    state_reply, desired, applied, dead, graph_users, *events = pipe.execute()
    states = profiles.states_from(users, state_reply)
    deliveries = delivery.deliveries_from(users, desired, applied, dead)
    upn = {
        g: directory.GraphUser.from_bytes(d, g).userPrincipalName
        for g, d in zip(looked_up, graph_users, strict=True)
        if d
    }
    rows, transitions = [], []
    for i, user in enumerate(users):
        state = states.get(user) or ProfileState()
        ids = sorted(set(drivers[user]))
        recent = profiles.events_from(events[i])
        # "decided" entries repeat what "applied" (or a dead letter) says with its latency.
        transitions += [{"user": user, **e} for e in recent if e.get("result") != "decided"]
        rows.append(
            {
                "user": user,
                "graph_ids": ids,
                "teams_user": ", ".join(upn.get(g) or g for g in ids),
                "availability": state.availability or None,
                "activity": state.activity or None,
                "profile": state.current,
                "pending": deliveries[user].pending,
                "updated_at": recent[0].get("at") if recent else None,
            }
        )
    transitions.sort(key=lambda e: e.get("at") or 0.0, reverse=True)
    return {
        "user_count": len(drivers),
        "linked_count": linked,
        "user_rows": rows,
        "transitions": transitions[:TRANSITIONS_SHOWN],
    }
