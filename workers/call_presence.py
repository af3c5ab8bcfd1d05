"""Call presence in Teams: while a PBX user is on a call, their Teams presence is Busy/InACall.

Our session's presence is remembered per Graph user, so the notification it causes is not
mapped back onto the PBX profile (no loop). A status the user set by hand in Teams beats
session presence in Teams' own aggregation, so it stays on top.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping

from redis import Redis

from core.graph import GraphClient
from core.state import calls, links, presence

SESSION = dt.timedelta(minutes=15)  # Graph allows PT5M..PT4H; refreshed while the call lasts
REFRESH_AFTER = dt.timedelta(minutes=10)
OWN = presence.OwnPresence("Busy", "InACall")


def _set_busy(
    redis: Redis, tenant: str, graph: GraphClient, app_id: str, ids: tuple[str, ...]
) -> None:
    for graph_id in ids:
        # Remember first: the notification our own change causes may arrive before we return.
        presence.set_own(redis, tenant, graph_id, OWN, int(SESSION.total_seconds()) + 60)
        graph.set_presence(graph_id, app_id, OWN.availability, OWN.activity, SESSION)


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
    record = calls.read(redis, tenant, pbx_user)
    first = not record.call_ids
    if call_id not in record.call_ids:
        record = dataclasses.replace(record, call_ids=(*record.call_ids, call_id))
    if first:
        graph_ids = tuple(links.graph_ids_of(redis, tenant, pbx_user, static_links))
        record = dataclasses.replace(record, graph_ids=graph_ids, since=time.time())
        _set_busy(redis, tenant, graph, app_id, record.graph_ids)
    calls.save(redis, tenant, pbx_user, record)
    return first


def call_ended(
    redis: Redis, tenant: str, graph: GraphClient, app_id: str, pbx_user: str, call_id: str
) -> None:
    record = calls.read(redis, tenant, pbx_user)
    left = tuple(c for c in record.call_ids if c != call_id)
    calls.save(redis, tenant, pbx_user, dataclasses.replace(record, call_ids=left))
    if left:
        return
    for graph_id in record.graph_ids:
        graph.clear_presence(graph_id, app_id)  # a missing session (404) is fine
        presence.clear_own(redis, tenant, graph_id)


def refresh(redis: Redis, tenant: str, graph: GraphClient, app_id: str, pbx_user: str) -> bool:
    """Re-set presence for a call still going; True while it needs another refresh."""
    record = calls.read(redis, tenant, pbx_user)
    if not record.call_ids:
        return False
    _set_busy(redis, tenant, graph, app_id, record.graph_ids)
    return True
