"""Links: which PBX users each Graph user drives, and the reverse index PBX user -> Graph ids.

The directory sync is the one writer: it builds both hashes under temporary keys and RENAMEs
them in one MULTI, or, when few links changed, writes only the changed fields of both in one
MULTI, so readers always see the two in step. Data written before the reverse
index existed has only the forward hash; the first reverse lookup rebuilds the index from it.
Links declared in the tenants file (`graph_id` of a PBX user) hold before any sync has run,
so the lookups take them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from core.settings import TenantSettings
from core.state._private import chunks, dumps, loads, replace_hashes, tenant_key, text

Static = Mapping[str, Sequence[str]]  # graph id -> PBX users, from the tenants file


def links_key(tenant: str) -> str:
    """Hash: graph user id -> JSON list of the PBX users it drives."""
    return tenant_key(tenant, "links")


def index_key(tenant: str) -> str:
    """Hash: PBX user -> JSON list of the Graph ids that drive it (the reverse of `links_key`)."""
    return tenant_key(tenant, "links:by-pbx")


@dataclass(frozen=True, slots=True)
class LinkedIds:
    """One field of either hash: a JSON list of ids (PBX users, or Graph ids), sorted."""

    ids: tuple[str, ...] = ()

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> LinkedIds:
        return cls(_ids(raw))

    def to_bytes(self) -> bytes:
        return dumps(sorted(set(self.ids)))


def _ids(raw: bytes | str | None) -> tuple[str, ...]:
    """The ids of a stored field (`LinkedIds`); the pipeline reads them without the record."""
    value = loads(raw)
    if not isinstance(value, list):
        return ()
    return tuple([v for v in value if isinstance(v, str)])


def static_links(settings: TenantSettings) -> dict[str, list[str]]:
    """The enabled links the tenants file declares: graph id -> PBX users."""
    out: dict[str, list[str]] = {}
    for user in settings.pbx_users:
        enabled = settings.enabled if user.enabled is None else user.enabled
        if user.graph_id and enabled:
            out.setdefault(user.graph_id, []).append(user.username)
    return out


# ---- writing --------------------------------------------------------------------------------


def replace(
    redis: Redis,
    tenant: str,
    links: Mapping[str, Iterable[str]],
    also: Callable[[Pipeline], object] | None = None,
) -> int:
    """Install `links` (graph id -> PBX users) and its reverse index in one step.

    `also` queues more writes into the same MULTI; returns how many Graph ids are linked.
    """
    # The stored form of `LinkedIds` right away: bytes, which the garbage collector never
    # walks, instead of 100,000 more lists alive while the relink's large structures are.
    forward: dict[str, bytes] = {}
    for gid, users in links.items():
        if ids := sorted(set(users)):
            forward[gid] = dumps(ids)
    if _write_changes(redis, tenant, links, forward, also):
        return len(forward)
    count, _ = replace_hashes(
        redis, {links_key(tenant): forward.items(), index_key(tenant): _reverse_items(links)}, also
    )
    return count


def _write_changes(
    redis: Redis,
    tenant: str,
    links: Mapping[str, Iterable[str]],
    forward: Mapping[str, bytes],
    also: Callable[[Pipeline], object] | None,
) -> bool:
    """Write only the fields of both hashes that differ from the stored links, in one MULTI.

    A delta round changes a few links out of 100,000: reading the links back (one HGETALL),
    the touched PBX users' index fields (one HMGET) and writing the differences costs a
    fraction of filling and renaming both hashes. Returns False, having written nothing, when
    the full replace is the better (or only sound) way: no links or no index stored yet, most
    links changed, or another writer raced this one. The stored index is trusted to be the
    reverse of the stored links: both are only ever written together, in one MULTI.
    """
    source, index = links_key(tenant), index_key(tenant)
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(source, index)  # type: ignore[no-untyped-call]
            if not forward or not pipe.exists(index):
                return False
            raw: dict[bytes, bytes] = pipe.hgetall(source)  # type: ignore[assignment]
            if not raw:
                return False
            stored = {text(gid): value for gid, value in raw.items()}
            changed: dict[str, bytes] = {}
            for gid, value in forward.items():
                if stored.pop(gid, None) != value:
                    changed[gid] = value
            # `stored` now holds the Graph ids no longer linked
            if 2 * (len(changed) + len(stored)) > max(len(raw), len(forward)):
                return False
            # PBX user -> the changed Graph ids that now drive it; its other Graph ids are
            # those of its stored index entry that did not change.
            touched: dict[str, set[str]] = {}
            for gid in changed:
                for user in links[gid]:
                    touched.setdefault(user, set()).add(gid)
            for gid in changed.keys() | stored.keys():
                for user in _ids(raw.get(gid.encode())):
                    touched.setdefault(user, set())
            gone = changed.keys() | stored.keys()
            users = list(touched)
            entries: list[bytes | None] = pipe.hmget(index, users) if users else []  # type: ignore[assignment]
            reverse: dict[str, bytes] = {}
            dropped: list[str] = []
            for user, entry in zip(users, entries, strict=True):
                gids = {g for g in _ids(entry) if g not in gone} | touched[user]
                if gids:
                    reverse[user] = dumps(sorted(gids))
                else:
                    dropped.append(user)
            pipe.multi()
            for chunk in chunks(changed.items()):
                pipe.hset(source, mapping=chunk)  # type: ignore[arg-type]
            if stored:
                pipe.hdel(source, *stored)
            for chunk in chunks(reverse.items()):
                pipe.hset(index, mapping=chunk)  # type: ignore[arg-type]
            if dropped:
                pipe.hdel(index, *dropped)
            if also is not None:
                also(pipe)
            pipe.execute()
            return True
        except WatchError:
            return False


def _reverse(links: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """PBX user -> the sorted, distinct Graph ids that drive it."""
    return {
        user: [gids] if isinstance(gids, str) else sorted(set(gids))
        for user, gids in _reverse_compact(links).items()
    }


def _reverse_items(links: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, bytes]]:
    """The reverse index's fields in their stored form (`LinkedIds`), built one at a time."""
    for user, gids in _reverse_compact(links).items():
        yield user, dumps((gids,) if isinstance(gids, str) else sorted(set(gids)))


def _reverse_compact(links: Mapping[str, Iterable[str]]) -> dict[str, str | list[str]]:
    """PBX user -> its one Graph id, or the list of them when several drive it.

    Most PBX users have one: a string each instead of a list spares the garbage collector
    100,000 containers to walk while the relink's large structures are alive.
    """
    out: dict[str, str | list[str]] = {}
    for gid, users in links.items():
        for user in users:
            have = out.setdefault(user, gid)
            if have is not gid:
                if isinstance(have, str):
                    out[user] = [have, gid]
                else:
                    have.append(gid)
    return out


# ---- reading: Graph id -> PBX users ---------------------------------------------------------


def read_all(redis: Redis, tenant: str) -> dict[str, list[str]]:
    """Every directory link: graph id -> PBX users."""
    raw: dict[bytes, bytes] = redis.hgetall(links_key(tenant))  # type: ignore[assignment]
    return {text(gid): list(LinkedIds.from_bytes(value).ids) for gid, value in raw.items()}


def linked_graph_ids(redis: Redis, tenant: str) -> list[str]:
    """The Graph users that drive at least one PBX user, sorted."""
    return sorted(text(k) for k in redis.hkeys(links_key(tenant)))


def count(redis: Redis, tenant: str) -> int:
    """How many Graph users drive a PBX user."""
    return int(redis.hlen(links_key(tenant)))


def queue_count(pipe: Redis, tenant: str) -> None:
    """Queue the HLEN of `count` into a pipeline; its answer is the count."""
    pipe.hlen(links_key(tenant))


def queue_pbx_users(pipe: Redis, tenant: str, graph_ids: Sequence[str]) -> None:
    """Queue the lookup of these Graph ids; decode the answer with `pbx_users_from`."""
    pipe.hmget(links_key(tenant), graph_ids)


def pbx_users_from(
    graph_ids: Sequence[str], raw: Sequence[bytes | None], static: Static | None = None
) -> list[list[str]]:
    """The PBX users each Graph id drives, sorted, static links included."""
    static = static or {}
    out = []
    for gid, value in zip(graph_ids, raw, strict=True):
        users = _ids(value) if value else ()
        out.append(sorted({*users, *static.get(gid, ())}))
    return out


def pbx_users_of(
    redis: Redis, tenant: str, graph_id: str, static: Static | None = None
) -> list[str]:
    """The PBX users one Graph user drives (one HGET)."""
    raw: bytes | None = redis.hget(links_key(tenant), graph_id)  # type: ignore[assignment]
    return pbx_users_from([graph_id], [raw], static)[0]


# ---- reading: PBX user -> Graph ids ---------------------------------------------------------


def graph_ids_of(
    redis: Redis, tenant: str, pbx_user: str, static: Static | None = None
) -> list[str]:
    """The Graph users that drive `pbx_user`, sorted: one HGET of the reverse index.

    Its EXISTS rides in the same round trip and tells "not linked" from "no index yet".
    """
    pipe = redis.pipeline(transaction=False)
    pipe.hget(index_key(tenant), pbx_user)
    pipe.exists(index_key(tenant))
    raw, indexed = pipe.execute()
    if raw is not None:
        found = set(LinkedIds.from_bytes(raw).ids)
    elif indexed:
        found = set()
    else:
        found = set(_rebuild_index(redis, tenant).get(pbx_user, ()))
    found.update(gid for gid, users in (static or {}).items() if pbx_user in users)
    return sorted(found)


def all_graph_ids(redis: Redis, tenant: str, static: Static | None = None) -> dict[str, list[str]]:
    """The whole reverse index: every linked PBX user -> the Graph ids that drive it."""
    raw: dict[bytes, bytes] = redis.hgetall(index_key(tenant))  # type: ignore[assignment]
    if raw:
        found = {text(user): set(LinkedIds.from_bytes(v).ids) for user, v in raw.items()}
    else:
        found = {user: set(gids) for user, gids in _rebuild_index(redis, tenant).items()}
    for gid, users in (static or {}).items():
        for user in users:
            found.setdefault(user, set()).add(gid)
    return {user: sorted(gids) for user, gids in found.items()}


def _rebuild_index(redis: Redis, tenant: str) -> dict[str, list[str]]:
    """Build the missing reverse index from the links hash (data of an older version).

    Optimistic: if the sync swaps in new links meanwhile, its index wins and is read again.
    """
    source, index = links_key(tenant), index_key(tenant)
    while True:
        with redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(source, index)  # type: ignore[no-untyped-call]
                if pipe.exists(index):
                    raw: dict[bytes, bytes] = pipe.hgetall(index)  # type: ignore[assignment]
                    return {text(u): list(LinkedIds.from_bytes(v).ids) for u, v in raw.items()}
                forward: dict[bytes, bytes] = pipe.hgetall(source)  # type: ignore[assignment]
                reverse = _reverse(
                    {text(gid): set(LinkedIds.from_bytes(v).ids) for gid, v in forward.items()}
                )
                pipe.multi()
                for chunk in chunks((u, dumps(g)) for u, g in reverse.items()):
                    pipe.hset(index, mapping=chunk)  # type: ignore[arg-type]
                pipe.execute()
                return reverse
            except WatchError:
                continue
