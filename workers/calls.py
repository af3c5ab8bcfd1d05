"""PBX calls -> Teams: while a PBX user is on a call, their Teams presence shows Busy/InACall.

Our session's presence is remembered per Graph user, so the notification it causes is not
mapped back onto the PBX profile (no loop). A status the user set by hand in Teams beats
session presence in Teams' own aggregation, so it stays on top.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import orjson
from redis import Redis

from core import keys
from core.graph import GraphClient

SESSION = dt.timedelta(minutes=15)  # Graph allows PT5M..PT4H; refreshed while the call lasts
REFRESH_AFTER = dt.timedelta(minutes=10)
OWN_AVAILABILITY, OWN_ACTIVITY = "Busy", "InACall"


def graph_ids_of(
    redis: Redis, tenant: str, pbx_user: str, static_links: Mapping[str, list[str]] | None = None
) -> list[str]:
    """The Graph users linked to a PBX user, by the directory sync or by the tenants file.

    Both map Graph ids to PBX users (the other way round), as the pipeline reads them.
    """
    out = {g for g, users in (static_links or {}).items() if pbx_user in users}
    for graph_id, users in redis.hgetall(keys.links(tenant)).items():
        if pbx_user in orjson.loads(users):
            out.add(graph_id.decode() if isinstance(graph_id, bytes) else graph_id)
    return sorted(out)


def _calls(redis: Redis, tenant: str, pbx_user: str) -> dict[str, Any]:
    raw = redis.hget(keys.calls(tenant), pbx_user)
    return orjson.loads(raw) if raw else {"call_ids": [], "graph_ids": []}


def _set_busy(redis: Redis, tenant: str, graph: GraphClient, app_id: str, ids: list[str]) -> None:
    for graph_id in ids:
        # Remember first: the notification our own change causes may arrive before we return.
        redis.set(
            keys.own_presence(tenant, graph_id),
            orjson.dumps([OWN_AVAILABILITY, OWN_ACTIVITY]),
            ex=int(SESSION.total_seconds()) + 60,
        )
        graph.set_presence(graph_id, app_id, OWN_AVAILABILITY, OWN_ACTIVITY, SESSION)


def call_started(
    redis: Redis,
    tenant: str,
    graph: GraphClient,
    app_id: str,
    pbx_user: str,
    call_id: str,
    static_links: Mapping[str, list[str]] | None = None,
) -> bool:
    """Returns True when a refresh must be scheduled (the first call of this user)."""
    record = _calls(redis, tenant, pbx_user)
    first = not record["call_ids"]
    if call_id not in record["call_ids"]:
        record["call_ids"].append(call_id)
    if first:
        record["graph_ids"] = graph_ids_of(redis, tenant, pbx_user, static_links)
        record["since"] = time.time()
        _set_busy(redis, tenant, graph, app_id, record["graph_ids"])
    redis.hset(keys.calls(tenant), pbx_user, orjson.dumps(record))
    return first


def call_ended(
    redis: Redis, tenant: str, graph: GraphClient, app_id: str, pbx_user: str, call_id: str
) -> None:
    record = _calls(redis, tenant, pbx_user)
    if call_id in record["call_ids"]:
        record["call_ids"].remove(call_id)
    if record["call_ids"]:
        redis.hset(keys.calls(tenant), pbx_user, orjson.dumps(record))
        return
    redis.hdel(keys.calls(tenant), pbx_user)
    for graph_id in record["graph_ids"]:
        graph.clear_presence(graph_id, app_id)  # a missing session (404) is fine
        redis.delete(keys.own_presence(tenant, graph_id))


def refresh(redis: Redis, tenant: str, graph: GraphClient, app_id: str, pbx_user: str) -> bool:
    """Re-set presence for a call still going; True while it needs another refresh."""
    record = _calls(redis, tenant, pbx_user)
    if not record["call_ids"]:
        return False
    _set_busy(redis, tenant, graph, app_id, record["graph_ids"])
    return True
