"""Intake records: how accepted items cross from the webhook to the workers and the clock.

- `pb:intake`, a stream read by the consumer group `forwarders`: the webhook appends one
  entry per request (`APPEND_SCRIPT`, one round trip), the call-state listeners one per
  call event (`queue_append`, the same script); a worker's forwarder reads entries,
  turns them into RQ jobs or lifecycle inbox items and acks and deletes them in one `MULTI`,
  so a crash between read and forward leaves the entry pending for another worker to claim.
- `pb:dedup:{digest}`: a content-derived `SET NX EX` key per item that drops redeliveries.
- `pb:metrics`: the cluster-wide counters hash (webhook, and the workers' `dropped:rich_*`).
- `pb:tenant:{t}:notifications`: a capped stream of the items a tenant's jobs handled.
- `pb:tenant:{t}:lifecycle`: the list of lifecycle items the clock drains and acts on.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import Redis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.exceptions import ResponseError

from core.state._private import PREFIX, tenant_key, text

STREAM = PREFIX + "intake"
GROUP = "forwarders"
METRICS = PREFIX + "metrics"
APPEND_KEYS = (STREAM, METRICS)  # the keys of `APPEND_SCRIPT`, in its order
DEDUP_TTL_SECONDS = 24 * 3600
# A basic presence notification carries only the user id, so a new change of the same
# user is byte-identical to a redelivery of the last one. Keeping such keys for 24 h would
# swallow every later change; a short window absorbs bursts of resends instead, and a
# late resend only costs one idempotent presence read. Even 5 s would swallow a real change
# that follows within the window, so the worker deletes the key when it reads presence
# (`forget_bare_dedup`): only resends that the read covers are absorbed.
BARE_DEDUP_TTL_SECONDS = 5
# A lifecycle item has no id either: a second `missed` or `reauthorizationRequired` of one
# subscription is byte-identical to the first (the expiry changes only once it is renewed).
# Its key is deleted when the clock takes the item from its inbox (`take_lifecycle`), so
# only resends that reach us before the clock acts (which covers them) are absorbed; the
# TTL only bounds the key while no clock drains.
LIFECYCLE_DEDUP_TTL_SECONDS = 60
# An entry read by a worker that died this long ago is taken over. A live forwarder acks
# within milliseconds of its read (plus the coalescing window, at most 10 s), so a taken-over
# entry is one whose reader is gone, or at worst forwarded twice (jobs are idempotent).
CLAIM_IDLE_MS = 15_000
NOTIFICATION_LOG_MAXLEN = 10_000

Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry: id and fields


def dedup_key(digest: str) -> str:
    return f"{PREFIX}dedup:{digest}"


def notification_log(tenant: str) -> str:
    return tenant_key(tenant, "notifications")


def lifecycle_inbox(tenant: str) -> str:
    return tenant_key(tenant, "lifecycle")


# ---- the webhook's side: one script call per request ---------------------------------------

APPEND_SCRIPT = """
local n = tonumber(ARGV[1])
local kept = {}
local dupes = 0
local i = 2
for _ = 1, n do
  if redis.call('SET', ARGV[i], '1', 'NX', 'EX', ARGV[i + 1]) then
    kept[#kept + 1] = ARGV[i + 2]
  else
    dupes = dupes + 1
  end
  i = i + 3
end
while i < #ARGV do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if dupes > 0 then redis.call('HINCRBY', KEYS[2], 'dropped:duplicate', dupes) end
if #kept > 0 then
  redis.call('HINCRBY', KEYS[2], 'accepted', #kept)
  redis.call('XADD', KEYS[1], '*', 'items', '[' .. table.concat(kept, ',') .. ']')
end
return #kept
"""


@dataclass(frozen=True)
class Accepted:
    """One verified item on its way to the stream (its JSON is one item of an entry)."""

    tenant: str
    kind: str  # "notification", "lifecycle" or "pbx"
    item: dict[str, Any]  # normalised, without clientState
    validation_tokens: list[str] | None = None

    def to_bytes(self) -> bytes:
        entry: dict[str, Any] = {"tenant": self.tenant, "kind": self.kind, "item": self.item}
        if self.validation_tokens is not None:
            entry["validationTokens"] = self.validation_tokens
        return orjson.dumps(entry)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Accepted:
        """From a decoded stream item (as jobs receive them); missing fields get defaults."""
        item = entry.get("item")
        tokens = entry.get("validationTokens")
        return cls(
            str(entry.get("tenant", "")),
            str(entry.get("kind") or "notification"),
            item if isinstance(item, dict) else {},
            list(tokens) if isinstance(tokens, list) else None,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Accepted:
        return cls.from_json(orjson.loads(raw))

    @property
    def bare(self) -> bool:
        """A basic item without an id: only the user id, so every change looks the same."""
        return self.kind == "notification" and not (
            self.item.get("id") or self.item.get("encryptedContent")
        )

    def dedup_key(self) -> tuple[str, int]:
        # Scoped by tenant: two tenants' items can be byte-identical (a PBX event names only a
        # user and a call id). Prefixing bytes costs less than copying the item on the hot path.
        content = orjson.dumps(self.item, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(self.tenant.encode() + b"\0" + content).hexdigest()
        if self.kind == "lifecycle":
            ttl = LIFECYCLE_DEDUP_TTL_SECONDS
        else:
            ttl = BARE_DEDUP_TTL_SECONDS if self.bare else DEDUP_TTL_SECONDS
        return dedup_key(digest[:40]), ttl


def script_args(accepted: list[Accepted], counters: dict[str, int]) -> list[bytes | str | int]:
    """ARGV of `APPEND_SCRIPT`: the items with their dedup keys, then counter increments."""
    args: list[bytes | str | int] = [len(accepted)]
    for entry in accepted:
        key, ttl = entry.dedup_key()
        args += [key, ttl, entry.to_bytes()]
    for field, count in counters.items():
        if count:
            args += [field, count]
    return args


def queue_append(pipe: Pipeline, accepted: list[Accepted], counters: dict[str, int]) -> None:
    """Queue the webhook's append (same script: dedup, one stream entry, counters) on a
    pipeline of a process that hands items over itself (the call-state listeners)."""
    script = pipe.register_script(APPEND_SCRIPT)  # loaded by the pipeline if Redis lacks it
    script(keys=list(APPEND_KEYS), args=script_args(accepted, counters), client=pipe)


# ---- the forwarder's side -------------------------------------------------------------------


def ensure_group(redis: Redis) -> None:
    try:
        redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def missing_group(exc: ResponseError) -> bool:
    """The stream or its group is gone (Redis came back empty, or someone deleted them).

    A read blocked on the stream when it went is answered "UNBLOCKED" (Redis 7), the next
    one "NOGROUP".
    """
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def claim_stale(redis: Redis, consumer: str, cursor: str, count: int) -> tuple[str, list[Entry]]:
    """Entries a dead consumer read but never acked (idle past `CLAIM_IDLE_MS`); next cursor."""
    reply: Any = redis.xautoclaim(
        STREAM, GROUP, consumer, min_idle_time=CLAIM_IDLE_MS, start_id=cursor, count=count
    )
    next_cursor, claimed = reply[0], reply[1]
    return text(next_cursor), [(eid, fields) for eid, fields in claimed if fields]


def read_new(redis: Redis, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
    """Entries no consumer has read yet; waits up to `block_ms` for the first when given."""
    read: Any = redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
    return [(eid, fields) for _, entries in read or [] for eid, fields in entries if fields]


def decode_entry(fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The items of one stream entry, each {"tenant", "kind", "item"[, "validationTokens"]}."""
    items: list[dict[str, Any]] = orjson.loads(fields[b"items"])
    return items


def group(entries: Iterable[Entry]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The entries' items by (tenant, kind), in stream order."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for _, fields in entries:
        for item in decode_entry(fields):
            grouped[(item["tenant"], item["kind"])].append(item)
    return grouped


def queue_ack(pipe: Pipeline, entry_ids: list[bytes]) -> None:
    """Ack and delete forwarded entries, in the pipeline that forwards them."""
    pipe.xack(STREAM, GROUP, *entry_ids)
    pipe.xdel(STREAM, *entry_ids)


def depth(redis: Redis) -> tuple[int, int]:
    """Entries waiting in the stream, and those read but not yet forwarded."""
    length = int(redis.xlen(STREAM))
    try:
        pending: Any = redis.xpending(STREAM, GROUP)
    except ResponseError:  # no stream or no group yet: no worker has started
        return length, 0
    return length, int(pending["pending"])


async def depth_async(redis: aioredis.Redis) -> tuple[int, int]:
    """`depth` for the web process's asyncio client."""
    length = int(await redis.xlen(STREAM))
    try:
        pending: Any = await redis.xpending(STREAM, GROUP)
    except ResponseError:  # no stream or no group yet: no worker has started
        return length, 0
    return length, int(pending["pending"])


# ---- per-tenant records: the notification log and the clock's lifecycle inbox -------------


def queue_log(pipe: Pipeline, tenant: str, items: list[dict[str, Any]]) -> None:
    key = notification_log(tenant)
    for entry in items:
        pipe.xadd(
            key,
            {"kind": entry["kind"], "userId": entry["item"].get("userId") or ""},
            maxlen=NOTIFICATION_LOG_MAXLEN,
            approximate=True,
        )


def log_notifications(redis: Redis, tenant: str, items: list[dict[str, Any]]) -> None:
    """Append the items to the tenant's capped log, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    queue_log(pipe, tenant, items)
    pipe.execute()


def queue_lifecycle(pipe: Pipeline, tenant: str, items: list[dict[str, Any]]) -> None:
    """Hand lifecycle items to the clock (log them, append the bare Graph items to its inbox)."""
    if items:
        queue_log(pipe, tenant, items)
        pipe.rpush(lifecycle_inbox(tenant), *[orjson.dumps(e["item"]) for e in items])


def take_lifecycle(redis: Redis, tenant: str, limit: int) -> list[dict[str, Any]]:
    """Pop up to `limit` inbox values; bare items, intake envelopes or lists of either.

    Their dedup keys go with them: the clock acts on what it takes, so the same event sent
    again after this is a new one to act on, not a resend to drop. Unreadable values are
    dropped: nothing a later drain could do with them.
    """
    raw: Any = redis.lpop(lifecycle_inbox(tenant), limit)
    items: list[dict[str, Any]] = []
    for value in raw or []:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        batch = parsed if isinstance(parsed, list) else [parsed]
        items.extend(p for p in batch if isinstance(p, dict))
    keys = {Accepted(tenant, "lifecycle", _graph_item(i)).dedup_key()[0] for i in items}
    if keys:
        redis.delete(*keys)
    return items


def _graph_item(value: dict[str, Any]) -> dict[str, Any]:
    """The Graph item of an inbox value (an envelope of earlier versions holds it)."""
    item = value.get("item")
    return item if "kind" in value and isinstance(item, dict) else value


def forget_bare_dedup(redis: Redis, items: list[dict[str, Any]]) -> None:
    """Delete the dedup keys of the bare items among `items`, just before presence is read.

    A resend that arrived before the read is covered by it, but a later change of the same
    user must not be taken for a resend, or the PBX would keep a stale profile until the
    user changes again.
    """
    bare = [a.dedup_key()[0] for a in map(Accepted.from_json, items) if a.bare]
    if bare:
        redis.delete(*bare)


# ---- counters -------------------------------------------------------------------------------


def add_counters(redis: Redis, counts: Mapping[str, int]) -> None:
    """Add to the cluster-wide counters, in one round trip."""
    if counts:
        pipe = redis.pipeline(transaction=False)
        for field, n in counts.items():
            pipe.hincrby(METRICS, field, n)
        pipe.execute()


def counters(redis: Redis) -> dict[str, int]:
    raw: Any = redis.hgetall(METRICS)
    return decode_counters(raw)


def queue_figures(pipe: AsyncPipeline | Pipeline) -> None:
    """Queue two reads for `/metrics`: the counters hash, then the stream's length."""
    pipe.hgetall(METRICS)
    pipe.xlen(STREAM)


def decode_counters(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {text(k): int(v) for k, v in raw.items()}
