"""The Graph directory as the sync keeps it: users, tombstones, delta link, status and lock.

Every write that readers can observe is atomic: a full import is built under a temporary
key and RENAMEd into place, and a delta round lands in one MULTI together with its new delta
link, so a crash mid-way leaves the previous state and link untouched (the next round then
replays the same changes, which are idempotent).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from redis import Redis

from core.errors import TransientError
from core.state._private import (
    PREFIX,
    WRITE_CHUNK,
    chunks,
    dumps,
    loads,
    replace_hashes,
    tenant_key,
    text,
)

LOCK_TTL_SECONDS = 15 * 60  # longer than a 100,000-user import; released at the end anyway
TOMBSTONE_DAYS = 30  # Entra keeps soft-deleted users restorable for 30 days
USER_FIELDS = (
    "userPrincipalName",
    "mail",
    "mailNickname",
    "onPremisesSamAccountName",
    "displayName",
)


def users_key(tenant: str) -> str:
    """Hash: graph user id -> compact JSON of the selected user fields."""
    return tenant_key(tenant, "directory:users")


def tombstones_key(tenant: str) -> str:
    """Hash: graph user id -> JSON {"at", "user"} of a soft-deleted user, kept 30 days."""
    return tenant_key(tenant, "directory:tombstones")


def delta_link_key(tenant: str) -> str:
    """String: the `/users/delta` deltaLink to resume from (Graph's lasts 7 days)."""
    return tenant_key(tenant, "directory:delta")


def status_key(tenant: str) -> str:
    """String: JSON status of the last sync (counts, conflicts, time)."""
    return tenant_key(tenant, "directory:status")


def lock_key(tenant: str) -> str:
    """String with expiry: held while one tenant's directory sync runs."""
    return f"{PREFIX}lock:directory:{tenant}"


# ---- codecs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphUser:
    """One directory user: the fields matching may use (stored without the id, its hash field)."""

    id: str
    userPrincipalName: str | None = None  # field names as Graph spells them
    mail: str | None = None
    mailNickname: str | None = None
    onPremisesSamAccountName: str | None = None
    displayName: str | None = None

    @classmethod
    def from_graph(cls, item: Mapping[str, Any]) -> GraphUser:
        """Build from one `/users` or `/users/delta` item; absent or non-text fields become None."""
        user_id = item.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("a Graph user needs a non-empty string 'id'")
        return cls(id=user_id, **_text_fields(item))

    @classmethod
    def from_bytes(cls, raw: bytes | str | None, graph_id: str) -> GraphUser:
        data = loads(raw)
        return cls(id=graph_id, **_text_fields(data)) if isinstance(data, dict) else cls(graph_id)

    def to_bytes(self) -> bytes:
        return dumps({k: v for k in USER_FIELDS if (v := getattr(self, k)) is not None})


def _text_fields(item: Mapping[str, Any]) -> dict[str, str]:
    return {k: item[k] for k in USER_FIELDS if isinstance(item.get(k), str)}


def encode_graph_item(item: Mapping[str, Any]) -> bytes:
    """The stored form of one Graph item: what `GraphUser.to_bytes` writes, without the object."""
    return dumps(_text_fields(item))


def merge_graph_item(previous: bytes | None, item: Mapping[str, Any]) -> bytes:
    """A delta item over what we had: properties it carries win, an explicit null clears."""
    merged: dict[str, Any] = loads(previous) or {}
    for name in USER_FIELDS:
        if name in item:
            merged[name] = item[name]
    return encode_graph_item(merged)


@dataclass(frozen=True)
class Tombstone:
    """A soft-deleted user, restorable in Entra for 30 days; `user` is its last stored record."""

    at: float = 0.0
    user: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, previous: bytes | None, at: float) -> Tombstone:
        user = loads(previous)
        return cls(at, user if isinstance(user, dict) else {})

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> Tombstone:
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        user = data.get("user")
        return cls(_number(data.get("at")), user if isinstance(user, dict) else {})

    def to_bytes(self) -> bytes:
        return dumps({"at": self.at, "user": self.user})


@dataclass(frozen=True)
class Conflict:
    """A PBX user claimed by several Graph users; it is linked to none of them."""

    pbx_user: str
    graph_ids: tuple[str, ...]


Mode = Literal["full", "delta"]


@dataclass(frozen=True)
class SyncReport:
    """What one sync did; stored as the tenant's directory status for status pages."""

    tenant: str = ""
    mode: Mode = "full"
    reason: str = ""  # why a full import: "requested", "no delta link", "delta token expired"
    synced_at: float = 0.0
    pages: int = 0
    graph_users: int = 0
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
    conflicts: tuple[Conflict, ...] = ()
    fingerprint: str = ""  # of the PBX side and settings the links were computed from
    import_seconds: float = 0.0  # wall time reading Graph into Redis
    match_seconds: float = 0.0  # wall time loading both sides and matching them

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> SyncReport:
        """Tolerant: a missing or mistyped field takes its default (fingerprint "" relinks)."""
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        changes = data.get("changes")
        merged = {**data, **(changes if isinstance(changes, dict) else {})}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = merged.get(f.name)
            if f.name == "conflicts":
                values[f.name] = _conflicts(value)
            elif isinstance(value, type(f.default)) and not isinstance(value, bool):
                values[f.name] = value
            elif isinstance(f.default, float) and isinstance(value, int):
                values[f.name] = float(value)
        if values.get("mode") not in ("full", "delta"):
            values.pop("mode", None)
        if values.get("pbx_source") not in ("adapter", "tenants_file"):
            values.pop("pbx_source", None)
        return cls(**values)

    def status(self) -> dict[str, Any]:
        """The stored JSON shape (also what `presence-bridge directory sync --json` prints)."""
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

    def to_bytes(self) -> bytes:
        return dumps(self.status())


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _conflicts(value: Any) -> tuple[Conflict, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        Conflict(c["pbx_user"], tuple(str(g) for g in c.get("graph_ids") or ()))
        for c in value
        if isinstance(c, dict) and isinstance(c.get("pbx_user"), str)
    )


# ---- lock -----------------------------------------------------------------------------------


class DirectoryBusy(TransientError):
    """Another sync of the same tenant is running; try again later."""


class DirectoryLock:
    """SET NX with expiry; released only by its holder, so an expired holder cannot free ours."""

    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
        "return 0"
    )

    def __init__(self, redis: Redis, tenant: str) -> None:
        self._redis = redis
        self._key = lock_key(tenant)
        self._token = secrets.token_hex(16)
        self._tenant = tenant

    def __enter__(self) -> DirectoryLock:
        if not self._redis.set(self._key, self._token, nx=True, ex=LOCK_TTL_SECONDS):
            raise DirectoryBusy(f"a directory sync of tenant {self._tenant} is already running")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._redis.eval(self._RELEASE, 1, self._key, self._token)


# ---- users ----------------------------------------------------------------------------------


def replace_users(
    redis: Redis, tenant: str, users: Iterable[tuple[str, bytes]], delta_link: str
) -> int:
    """Install a full import (encoded items) and the delta link to follow it with."""
    [count] = replace_hashes(
        redis, {users_key(tenant): users}, lambda pipe: pipe.set(delta_link_key(tenant), delta_link)
    )
    # Users listed again are not deleted any more; the rest of the tombstones keep their clock.
    tombstones = tombstones_key(tenant)
    ids = [text(gid) for gid in redis.hkeys(tombstones)]
    present = stored_users(redis, tenant, ids)
    stale = [gid for gid, value in present.items() if value is not None]
    if stale:
        redis.hdel(tombstones, *stale)
    return count


def load_users(redis: Redis, tenant: str) -> list[GraphUser]:
    raw: dict[bytes, bytes] = redis.hgetall(users_key(tenant))  # type: ignore[assignment]
    return [GraphUser.from_bytes(value, gid.decode()) for gid, value in raw.items()]


def stored_users(redis: Redis, tenant: str, ids: list[str]) -> dict[str, bytes | None]:
    """The stored (encoded) record of each id, None for an id not in the directory."""
    out: dict[str, bytes | None] = {}
    for start in range(0, len(ids), WRITE_CHUNK):
        part = ids[start : start + WRITE_CHUNK]
        values: list[bytes | None] = redis.hmget(users_key(tenant), part)  # type: ignore[assignment]
        out.update(zip(part, values, strict=True))
    return out


def queue_users(pipe: Redis, tenant: str, ids: list[str]) -> None:
    """Queue an HMGET of these users; decode each answer with `GraphUser.from_bytes`."""
    pipe.hmget(users_key(tenant), ids)


def find_by_upn(redis: Redis, tenant: str, upn: str) -> str | None:
    """The Graph id whose userPrincipalName is `upn` (any case); a scan, for operators only."""
    wanted = upn.lower()
    for gid, raw in redis.hscan_iter(users_key(tenant)):
        if (GraphUser.from_bytes(raw, "").userPrincipalName or "").lower() == wanted:
            return text(gid)
    return None


def apply_delta(
    redis: Redis,
    tenant: str,
    upserts: Mapping[str, bytes],
    soft_deleted: Mapping[str, Tombstone],
    hard_deleted: Iterable[str],
    delta_link: str,
) -> None:
    """One MULTI: merged users, tombstones, removals, and the new delta link."""
    users, tombstones = users_key(tenant), tombstones_key(tenant)
    gone = list(hard_deleted)
    pipe = redis.pipeline(transaction=True)
    for chunk in chunks(upserts.items()):
        pipe.hset(users, mapping=chunk)  # type: ignore[arg-type]
        pipe.hdel(tombstones, *chunk)  # a restored user comes back as new
    for chunk in chunks((gid, t.to_bytes()) for gid, t in soft_deleted.items()):
        pipe.hdel(users, *chunk)
        pipe.hset(tombstones, mapping=chunk)  # type: ignore[arg-type]
    for start in range(0, len(gone), WRITE_CHUNK):
        pipe.hdel(users, *gone[start : start + WRITE_CHUNK])
        pipe.hdel(tombstones, *gone[start : start + WRITE_CHUNK])
    pipe.set(delta_link_key(tenant), delta_link)
    pipe.execute()


def prune_tombstones(redis: Redis, tenant: str, now: float) -> int:
    """Forget soft-deleted users older than Entra's retention; returns how many are left."""
    key = tombstones_key(tenant)
    raw: dict[bytes, bytes] = redis.hgetall(key)  # type: ignore[assignment]
    horizon = now - TOMBSTONE_DAYS * 86_400
    old = [gid for gid, value in raw.items() if Tombstone.from_bytes(value).at < horizon]
    if old:
        redis.hdel(key, *old)
    return len(raw) - len(old)


def delta_link(redis: Redis, tenant: str) -> str | None:
    raw: bytes | None = redis.get(delta_link_key(tenant))  # type: ignore[assignment]
    return raw.decode() if raw else None


# ---- status ---------------------------------------------------------------------------------


def read_status(redis: Redis, tenant: str) -> SyncReport | None:
    """The last sync's report, None before the first sync."""
    raw: bytes | None = redis.get(status_key(tenant))  # type: ignore[assignment]
    return SyncReport.from_bytes(raw) if raw else None


def queue_status(pipe: Redis, tenant: str) -> None:
    """Queue the read of `read_status`; decode the answer with `status_from`."""
    pipe.get(status_key(tenant))


def status_from(raw: bytes | None) -> SyncReport | None:
    return SyncReport.from_bytes(raw) if raw else None


def write_status(redis: Redis, tenant: str, report: SyncReport) -> None:
    """Store the report (on a pipeline too: the links swap writes it in its MULTI)."""
    redis.set(status_key(tenant), report.to_bytes())
