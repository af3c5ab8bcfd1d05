"""Keep each tenant's Graph directory in Redis and turn it into links to PBX users.

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
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from redis import Redis

from core.errors import GraphError
from core.graph import GraphClient, GraphRequestError
from core.settings import TenantSettings
from workers import directory_store as store
from workers.matching import (
    Conflict,
    PbxUserLike,
    enabled_links,
    is_enabled,
    match_users,
    overrides_from,
)
from workers.pbx.base import PbxAdapter

log = logging.getLogger(__name__)

SELECT = ("id", "userPrincipalName", "mail", "mailNickname", "onPremisesSamAccountName",
          "displayName")  # fmt: skip
MAX_PAGE_SIZE = 999  # Graph's largest `$top` for /users
# Directory delta tokens last 7 days; an expired one comes back as 410 Gone (with a Location
# to start over) or as a 4xx carrying one of these codes. Either way: import everything again.
EXPIRED_CODES = frozenset({"syncStateNotFound", "syncStateInvalid", "resyncRequired"})

Mode = Literal["full", "delta"]


@dataclass(frozen=True)
class SyncReport:
    """What one sync did; `status()` is the JSON record kept in Redis for status pages."""

    tenant: str
    mode: Mode
    reason: str  # why a full import: "requested", "no delta link", "delta token expired"
    synced_at: float
    pages: int
    graph_users: int
    upserted: int = 0
    soft_deleted: int = 0
    hard_deleted: int = 0
    tombstones: int = 0
    pbx_users: int = 0
    pbx_source: Literal["adapter", "tenants_file"] = "tenants_file"
    linked_pbx: int = 0  # PBX users that follow a Graph user
    linked_graph: int = 0  # Graph users that drive at least one PBX user
    unlinked_graph: int = 0
    unlinked_pbx: int = 0
    disabled: int = 0  # links matched but switched off by the enable flags
    static_links: int = 0
    conflicts: tuple[Conflict, ...] = field(default=())
    fingerprint: str = ""  # of the PBX side and settings the links were computed from
    import_seconds: float = 0.0  # wall time reading Graph into Redis
    match_seconds: float = 0.0  # wall time loading both sides and matching them

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> SyncReport:
        changes = status["changes"]
        return cls(
            **{f.name: status[f.name] for f in dataclasses.fields(cls) if f.name in _PLAIN},
            upserted=changes["upserted"],
            soft_deleted=changes["soft_deleted"],
            hard_deleted=changes["hard_deleted"],
            conflicts=tuple(Conflict(c["pbx_user"], tuple(c["graph_ids"]))
                            for c in status["conflicts"]),
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "mode": self.mode,
            "reason": self.reason,
            "synced_at": self.synced_at,
            "pages": self.pages,
            "graph_users": self.graph_users,
            "changes": {
                "upserted": self.upserted,
                "soft_deleted": self.soft_deleted,
                "hard_deleted": self.hard_deleted,
            },
            "tombstones": self.tombstones,
            "pbx_users": self.pbx_users,
            "pbx_source": self.pbx_source,
            "linked_pbx": self.linked_pbx,
            "linked_graph": self.linked_graph,
            "unlinked_graph": self.unlinked_graph,
            "unlinked_pbx": self.unlinked_pbx,
            "disabled": self.disabled,
            "static_links": self.static_links,
            "conflict_count": len(self.conflicts),
            "conflicts": [
                {"pbx_user": c.pbx_user, "graph_ids": list(c.graph_ids)} for c in self.conflicts
            ],
            "fingerprint": self.fingerprint,
            "import_seconds": self.import_seconds,
            "match_seconds": self.match_seconds,
        }


_PLAIN = frozenset(
    f.name for f in dataclasses.fields(SyncReport)
    if f.name not in ("upserted", "soft_deleted", "hard_deleted", "conflicts")
)  # fmt: skip


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
    with store.TenantLock(redis, tenant):
        started = time.perf_counter()
        link = None if full else store.delta_link(redis, tenant)
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
        tombstones = store.prune_tombstones(redis, tenant, now)
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
        (item["id"], store.encode_user(item))
        for item in pages
        if isinstance(item.get("id"), str) and item["id"]
    )
    count = store.replace_users(redis, tenant, items, latest.delta_link)
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

    previous = store.current_records(redis, tenant, list(latest))
    upserts: dict[str, bytes] = {}
    soft: dict[str, bytes] = {}
    hard: list[str] = []
    for gid, item in latest.items():
        removed = item.get("@removed")
        if removed is None:
            upserts[gid] = store.merge_user(previous[gid], item)
        elif isinstance(removed, Mapping) and removed.get("reason") == "deleted":
            hard.append(gid)
        else:
            # "changed" = soft-deleted, restorable for 30 days; an unknown reason is treated
            # the same way, which unlinks without forgetting.
            kept = previous[gid]
            record = orjson.loads(kept) if kept else {}
            soft[gid] = orjson.dumps({"at": now, "user": record})
    store.apply_delta(redis, tenant, upserts, soft, hard, pages.delta_link)
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
    previous = store.read_status(redis, tenant)
    if previous is None or previous.get("fingerprint") != fingerprint:
        return None
    if store.links_count(redis, tenant) != previous.get("linked_graph"):
        return None  # someone removed or edited the links hash: rebuild it
    try:
        return SyncReport.from_status(previous)
    except (KeyError, TypeError, ValueError):
        return None  # a record written by another version: recompute


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
        store.write_status(redis, tenant, report.status())
        return report
    started = time.perf_counter()
    graph_users = store.load_users(redis, tenant)
    pbx_users: Sequence[PbxUserLike] = listed if listed is not None else settings.pbx_users
    overrides = overrides_from(settings.pbx_users)
    # A PBX user with a static link in the tenants file is linked by it, never matched.
    static = {u.username: u.graph_id for u in settings.pbx_users if u.graph_id}
    result = match_users(
        graph_users, [p for p in pbx_users if p.username not in static], settings.matching
    )
    enabled = enabled_links(result, overrides, settings.enabled)
    links: dict[str, set[str]] = defaultdict(set)
    for link in enabled:
        links[link.graph_id].add(link.pbx_user)
    static_enabled = 0
    for username, gid in static.items():
        if is_enabled(settings.enabled, overrides.get(username)):
            links[gid].add(username)
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
        linked_pbx=sum(len(users) for users in links.values()),
        linked_graph=len(links),
        unlinked_graph=sum(1 for gid in result.unlinked_graph if gid not in links),
        unlinked_pbx=len(result.unlinked_pbx),
        disabled=disabled,
        static_links=static_enabled,
        conflicts=result.conflicts,
        fingerprint=fingerprint,
        import_seconds=done.seconds,
        match_seconds=time.perf_counter() - started,
    )
    store.write_links(redis, tenant, {g: sorted(u) for g, u in links.items()}, report.status())
    return report
