"""Directory sync: keep each tenant's Graph directory in Redis and turn it into PBX links.

A full import lists `/users` ($top up to 999 per page); afterwards `/users/delta` rounds bring
only the changes. The delta link for the full import is taken with `$deltatoken=latest`
*before* listing, so anything that changes while the list runs is replayed by the next round
(delta items are applied idempotently). Listing is used instead of an initial delta round
because `/users` takes `$top=999` while delta pages are as small as the server likes: about
ten times fewer requests for a large tenant, which matters under Graph's directory throttling.

After every import or round the links hash is rebuilt from scratch: matching is a pure
function of both directories and the enable flags, so there is no incremental state to drift.
Entry point for the clock, the CLI and the admin endpoint: `sync_directory`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from core.errors import GraphError
from core.graph import GraphClient, GraphRequestError
from core.settings import TenantSettings
from core.state import directory, links
from core.state.directory import Mode, SyncReport, Tombstone
from workers.matching import (
    PbxUserLike,
    enabled_links,
    is_enabled,
    match_users,
    overrides_from,
)
from workers.pbx.base import PbxAdapter

log = logging.getLogger(__name__)

SELECT = ("id", *directory.USER_FIELDS)
MAX_PAGE_SIZE = 999  # Graph's largest `$top` for /users
# Directory delta tokens last 7 days; an expired one comes back as 410 Gone (with a Location
# to start over) or as a 4xx carrying one of these codes. Either way: import everything again.
EXPIRED_CODES = frozenset({"syncStateNotFound", "syncStateInvalid", "resyncRequired"})


@dataclass
class _Import:
    mode: Mode
    reason: str
    pages: int
    upserted: int = 0
    soft_deleted: int = 0
    hard_deleted: int = 0
    seconds: float = 0.0


def sync_directory(
    tenant_settings: TenantSettings,
    redis: Redis,
    graph_client: GraphClient,
    adapter: PbxAdapter | None = None,
    full: bool = False,
    *,
    page_size: int = MAX_PAGE_SIZE,
    clock: Callable[[], float] = time.time,
) -> SyncReport:
    """Import (full, or a delta round when a delta link is stored), then rewrite the links.

    Raises `DirectoryBusy` (transient) when the same tenant is already syncing, and Graph or
    PBX errors as they come; a failed sync leaves the previous directory, link and links.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
    tenant = tenant_settings.name
    with directory.DirectoryLock(redis, tenant):
        started = time.perf_counter()
        link = None if full else directory.delta_link(redis, tenant)
        if full:
            done = _full_import(redis, tenant, graph_client, page_size, "requested")
        elif link is None:
            done = _full_import(redis, tenant, graph_client, page_size, "no delta link")
        elif not link.startswith(str(tenant_settings.graph_base_url).rstrip("/") + "/"):
            # The Graph base URL changed since the link was stored: it cannot be followed.
            done = _full_import(redis, tenant, graph_client, page_size, "graph base URL changed")
        else:
            try:
                done = _delta_round(redis, tenant, graph_client, link, clock())
            except GraphError as error:
                if not _expired(error):
                    raise
                log.info("directory %s: delta token expired (%s); importing again", tenant,
                         error.code)  # fmt: skip
                done = _full_import(redis, tenant, graph_client, page_size,
                                    "delta token expired")  # fmt: skip
        now = clock()
        tombstones = directory.prune_tombstones(redis, tenant, now)
        done.seconds = time.perf_counter() - started
        report = _relink(redis, tenant_settings, adapter, done, tombstones, now)
    log.info(
        "directory %s: %s import (%s), %d users, %d pages; %d PBX users linked, %d conflicts",
        tenant, report.mode, report.reason, report.graph_users, report.pages,
        report.linked_pbx, len(report.conflicts),
    )  # fmt: skip
    return report


def _expired(error: GraphError) -> bool:
    return error.status == 410 or (400 <= error.status < 500 and error.code in EXPIRED_CODES)


def _full_import(
    redis: Redis, tenant: str, graph: GraphClient, page_size: int, reason: str
) -> _Import:
    select = ",".join(SELECT)
    # Taken first on purpose: see the module docstring.
    latest = graph.paginate("/users/delta", {"$deltatoken": "latest", "$select": select})
    for _ in latest:
        pass  # "latest" carries no users, only the link
    if latest.delta_link is None:
        raise GraphRequestError(502, "noDeltaLink", "GET /users/delta: answer without a deltaLink")
    pages = graph.paginate("/users", {"$select": select, "$top": str(page_size)})
    items = (
        (item["id"], directory.encode_graph_item(item))
        for item in pages
        if isinstance(item.get("id"), str) and item["id"]
    )
    count = directory.replace_users(redis, tenant, items, latest.delta_link)
    return _Import("full", reason, pages.pages + latest.pages, upserted=count)


def _delta_round(redis: Redis, tenant: str, graph: GraphClient, link: str, now: float) -> _Import:
    pages = graph.users_delta(link, SELECT)
    # Graph may repeat an entity within a round; the later item describes the newer state.
    latest: dict[str, dict[str, Any]] = {}
    for item in pages:
        gid = item.get("id")
        if not isinstance(gid, str) or not gid:
            continue
        before = latest.get(gid)
        if before is not None and "@removed" not in before and "@removed" not in item:
            latest[gid] = {**before, **item}
        else:
            latest[gid] = dict(item)
    if pages.delta_link is None:
        raise GraphRequestError(502, "noDeltaLink", "GET /users/delta: round without a deltaLink")

    previous = directory.stored_users(redis, tenant, list(latest))
    upserts: dict[str, bytes] = {}
    soft: dict[str, Tombstone] = {}
    hard: list[str] = []
    for gid, item in latest.items():
        removed = item.get("@removed")
        if removed is None:
            upserts[gid] = directory.merge_graph_item(previous[gid], item)
        elif isinstance(removed, Mapping) and removed.get("reason") == "deleted":
            hard.append(gid)
        else:
            # "changed" = soft-deleted, restorable for 30 days; an unknown reason is treated
            # the same way, which unlinks without forgetting.
            soft[gid] = Tombstone.of(previous[gid], now)
    directory.apply_delta(redis, tenant, upserts, soft, hard, pages.delta_link)
    return _Import("delta", "delta link", pages.pages, len(upserts), len(soft), len(hard))


def _fingerprint(settings: TenantSettings, listed: Sequence[PbxUserLike] | None) -> str:
    """Everything besides the Graph directory that the links depend on."""
    own = [(u.username, u.email, u.extension, u.enabled, u.graph_id) for u in settings.pbx_users]
    pbx = None if listed is None else [(u.username, u.email, u.extension) for u in listed]
    basis = [settings.matching.model_dump(), settings.enabled, own, pbx]
    return hashlib.sha256(orjson.dumps(basis)).hexdigest()


def _unchanged(redis: Redis, tenant: str, done: _Import, fingerprint: str) -> SyncReport | None:
    """The last status, when neither side changed since and the links it describes are there."""
    if done.mode != "delta" or done.upserted or done.soft_deleted or done.hard_deleted:
        return None
    previous = directory.read_status(redis, tenant)
    if previous is None or previous.fingerprint != fingerprint:
        return None  # no status yet, or one another version wrote ("" fingerprint): recompute
    if links.count(redis, tenant) != previous.linked_graph:
        return None  # someone removed or edited the links hash: rebuild it
    return previous


def _relink(
    redis: Redis,
    settings: TenantSettings,
    adapter: PbxAdapter | None,
    done: _Import,
    tombstones: int,
    now: float,
) -> SyncReport:
    tenant = settings.name
    listed = adapter.list_users() if adapter is not None else None
    fingerprint = _fingerprint(settings, listed)
    previous = _unchanged(redis, tenant, done, fingerprint)
    if previous is not None:
        # An idle round (the usual case every 5 minutes) costs two small requests, not a
        # rematch of the whole tenant.
        report = dataclasses.replace(
            previous, mode="delta", reason="no changes",
            synced_at=now, pages=done.pages, upserted=0, soft_deleted=0, hard_deleted=0,
            tombstones=tombstones, import_seconds=done.seconds, match_seconds=0.0,
        )  # fmt: skip
        directory.write_status(redis, tenant, report)
        return report
    started = time.perf_counter()
    graph_users = directory.load_users(redis, tenant)
    pbx_users: Sequence[PbxUserLike] = listed if listed is not None else settings.pbx_users
    overrides = overrides_from(settings.pbx_users)
    # A PBX user with a static link in the tenants file is linked by it, never matched.
    static = {u.username: u.graph_id for u in settings.pbx_users if u.graph_id}
    result = match_users(
        graph_users, [p for p in pbx_users if p.username not in static], settings.matching
    )
    enabled = enabled_links(result, overrides, settings.enabled)
    linked: dict[str, set[str]] = defaultdict(set)
    for link in enabled:
        linked[link.graph_id].add(link.pbx_user)
    static_enabled = 0
    for username, gid in static.items():
        if is_enabled(settings.enabled, overrides.get(username)):
            linked[gid].add(username)
            static_enabled += 1
    disabled = len(result.links) - len(enabled) + len(static) - static_enabled

    report = SyncReport(
        tenant=tenant,
        mode=done.mode,
        reason=done.reason,
        synced_at=now,
        pages=done.pages,
        graph_users=len(graph_users),
        upserted=done.upserted,
        soft_deleted=done.soft_deleted,
        hard_deleted=done.hard_deleted,
        tombstones=tombstones,
        pbx_users=len({p.username for p in pbx_users} | set(static)),
        pbx_source="adapter" if listed is not None else "tenants_file",
        linked_pbx=sum(len(users) for users in linked.values()),
        linked_graph=len(linked),
        unlinked_graph=sum(1 for gid in result.unlinked_graph if gid not in linked),
        unlinked_pbx=len(result.unlinked_pbx),
        disabled=disabled,
        static_links=static_enabled,
        conflicts=result.conflicts,
        fingerprint=fingerprint,
        import_seconds=done.seconds,
        match_seconds=time.perf_counter() - started,
    )
    links.replace(redis, tenant, linked, lambda pipe: directory.write_status(pipe, tenant, report))
    return report
