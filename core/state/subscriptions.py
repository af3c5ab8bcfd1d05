"""Graph presence subscriptions the clock holds, and the clock's per-tenant bookkeeping.

- `pb:sub:{id}` hash: what the webhook checks a notification against (tenant, SHA-256 of
  clientState) and what the clock keeps (account, users, expiry, certificate). `save` is its
  one writer and replaces the whole hash in one MULTI, so no reader sees part of a record.
- `pb:tenant:{t}:subs` set of the tenant's subscription ids; `…:sub-accounts` hash
  account -> the id it holds.
- `…:sub-backoff` hash account -> JSON `Backoff`; `…:renew-owed` hash account -> JSON
  `OwedRenewal`; `…:sub-status` JSON `ReconcileStatus`; `…:polled` JSON list of the user ids
  polled instead; `…:sweep-requested` a flag.

The clock writes all of these under its leader lock: each write takes the clock's term
(`core.state.coordination.Fence`) and is refused once that term is over.

The clientState itself never reaches Redis: only its SHA-256, which the webhook compares in
constant time. clientState is 128+ random bits, so the digest reveals nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis

from core.state._private import PREFIX, Batch, count, dumps, loads, number, tenant_key, text
from core.state.coordination import Fence, fenced


def subscription_key(subscription_id: str) -> str:
    return f"{PREFIX}sub:{subscription_id}"


def tenant_subscriptions_key(tenant: str) -> str:
    return tenant_key(tenant, "subs")


def accounts_key(tenant: str) -> str:
    return tenant_key(tenant, "sub-accounts")


def backoff_key(tenant: str) -> str:
    return tenant_key(tenant, "sub-backoff")


def owed_key(tenant: str) -> str:
    return tenant_key(tenant, "renew-owed")


def status_key(tenant: str) -> str:
    return tenant_key(tenant, "sub-status")


def polled_key(tenant: str) -> str:
    return tenant_key(tenant, "polled")


def sweep_requested_key(tenant: str) -> str:
    return tenant_key(tenant, "sweep-requested")


def client_state_digest(client_state: str) -> bytes:
    return hashlib.sha256(client_state.encode()).digest()


# ---- the subscription record -------------------------------------------------------------

_TENANT, _DIGEST = "tenant", "client_state_sha256"
_REGISTRATION_FIELDS = (_TENANT, _DIGEST)


@dataclass(frozen=True)
class Registration:
    """The webhook's part of a record: enough to accept a notification, read in one HMGET."""

    subscription_id: str
    tenant: str
    client_state_digest: bytes


@dataclass(frozen=True)
class SubscriptionRecord:
    subscription_id: str
    tenant: str
    client_state_digest: bytes
    # Empty for a bare registration (the webhook's part only): no account holds it.
    account: str = ""
    user_ids: tuple[str, ...] = ()
    expires_at: float = 0.0
    created_at: float = 0.0
    renewed_at: float = 0.0
    certificate_id: str | None = None

    @property
    def managed(self) -> bool:
        """Held by a service account, so the clock renews, rebalances and deletes it."""
        return bool(self.account)

    def to_fields(self) -> dict[str, bytes | str]:
        out: dict[str, bytes | str] = {_TENANT: self.tenant, _DIGEST: self.client_state_digest}
        if self.managed:
            out |= {
                "account": self.account,
                "users": dumps(list(self.user_ids)),
                "expires_at": repr(self.expires_at),
                "created_at": repr(self.created_at),
                "renewed_at": repr(self.renewed_at),
            }
        if self.certificate_id:
            out["certificate_id"] = self.certificate_id
        return out

    @classmethod
    def from_fields(
        cls, subscription_id: str, raw: Mapping[bytes, bytes]
    ) -> SubscriptionRecord | None:
        """None without tenant or digest: the webhook could not accept its notifications.

        Hashes from before `save` was the one writer read too: without the clock's fields (a
        bare registration) as unmanaged; with only the clock's (merged in after a delete) as
        absent, so the next reconcile creates that account's subscription again.
        """
        tenant, digest = raw.get(_TENANT.encode()), raw.get(_DIGEST.encode())
        if not tenant or not digest:
            return None
        users = loads(raw.get(b"users"))
        cert = raw.get(b"certificate_id")
        return cls(
            subscription_id=subscription_id,
            tenant=text(tenant),
            client_state_digest=digest,
            account=text(raw.get(b"account", b"")),
            user_ids=tuple(str(u) for u in users) if isinstance(users, list) else (),
            expires_at=number(raw.get(b"expires_at")) or 0.0,
            created_at=number(raw.get(b"created_at")) or 0.0,
            renewed_at=number(raw.get(b"renewed_at")) or 0.0,
            certificate_id=text(cert) if cert else None,
        )


def save(redis: Redis, record: SubscriptionRecord, fence: Fence | None = None) -> None:
    """Write the whole record (replacing what was stored) and index it, atomically.

    A managed record is fresh from Graph (created, adopted or renewed), so it also settles
    any renewal its account owed.
    """
    key = subscription_key(record.subscription_id)

    def write(pipe: Batch) -> None:
        pipe.delete(key)
        pipe.hset(key, mapping=record.to_fields())  # type: ignore[arg-type]
        pipe.sadd(tenant_subscriptions_key(record.tenant), record.subscription_id)
        if record.managed:
            pipe.hset(accounts_key(record.tenant), record.account, record.subscription_id)
            pipe.hdel(owed_key(record.tenant), record.account)

    fenced(redis, fence, write)


def register(
    redis: Redis, subscription_id: str, tenant: str, client_state: str
) -> SubscriptionRecord:
    """A bare registration: the webhook accepts its notifications, no account manages it."""
    record = SubscriptionRecord(subscription_id, tenant, client_state_digest(client_state))
    save(redis, record)
    return record


def forget(redis: Redis, record: SubscriptionRecord, fence: Fence | None = None) -> None:
    """Drop the record; the account index too, unless it already names a newer subscription."""

    def write(pipe: Batch) -> None:
        pipe.delete(subscription_key(record.subscription_id))
        pipe.srem(tenant_subscriptions_key(record.tenant), record.subscription_id)
        if record.managed:
            pipe.hget(accounts_key(record.tenant), record.account)

    *_, held = fenced(redis, fence, write)
    if record.managed and held is not None and text(held) == record.subscription_id:
        fenced(redis, fence, lambda pipe: pipe.hdel(accounts_key(record.tenant), record.account))


def read(redis: Redis, subscription_id: str) -> SubscriptionRecord | None:
    raw: dict[bytes, bytes] = redis.hgetall(subscription_key(subscription_id))  # type: ignore[assignment]
    return SubscriptionRecord.from_fields(subscription_id, raw)


def load(redis: Redis, tenant: str) -> dict[str, SubscriptionRecord]:
    """The recorded subscription of each account of the tenant, by account."""
    index: dict[bytes, bytes] = redis.hgetall(accounts_key(tenant))  # type: ignore[assignment]
    if not index:
        return {}
    pipe = redis.pipeline(transaction=False)
    for sid in index.values():
        pipe.hgetall(subscription_key(text(sid)))
    out: dict[str, SubscriptionRecord] = {}
    for (account, sid), raw in zip(index.items(), pipe.execute(), strict=True):
        record = SubscriptionRecord.from_fields(text(sid), raw)
        if record is not None and record.account == text(account):
            out[record.account] = record
    return out


def tenant_records(redis: Redis, tenant: str) -> list[SubscriptionRecord]:
    """Every readable record in the tenant's set, by id (bare registrations included)."""
    ids = sorted(text(s) for s in redis.smembers(tenant_subscriptions_key(tenant)))
    pipe = redis.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(subscription_key(sid))
    rows = zip(ids, pipe.execute(), strict=True)
    records = (SubscriptionRecord.from_fields(sid, raw) for sid, raw in rows)
    return [r for r in records if r is not None]


def queue_count(pipe: Batch, tenant: str) -> None:
    """Queue the count of the tenant's subscriptions (an int in the results)."""
    pipe.scard(tenant_subscriptions_key(tenant))


def queue_registration(pipe: Batch, subscription_id: str) -> None:
    """Queue the read `registration_from_row` decodes (the webhook batches many)."""
    pipe.hmget(subscription_key(subscription_id), _REGISTRATION_FIELDS)


def registration_from_row(subscription_id: str, row: Sequence[bytes | None]) -> Registration | None:
    tenant, digest = row
    if not tenant or not digest:
        return None
    return Registration(subscription_id, text(tenant), digest)


def registration(redis: Redis, subscription_id: str) -> Registration | None:
    row = redis.hmget(subscription_key(subscription_id), _REGISTRATION_FIELDS)
    return registration_from_row(subscription_id, row)  # type: ignore[arg-type]


def registered_for(redis: Redis, subscription_id: str, tenant: str) -> bool:
    """True when the webhook knows this subscription's clientState for this tenant."""
    known = registration(redis, subscription_id)
    return known is not None and known.tenant == tenant


# ---- back-off of an account after 429 / 5xx ----------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Until when an account waits, and why.

    `failures` counts the failures in a row that grow the exponential back-off (5xx, network);
    a 429 says itself how long to wait (`throttled`) and leaves that count as it was.
    """

    until: float = 0.0
    # Older entries lack the count and were written after at least one failure.
    failures: int = 1
    reason: str = ""
    throttled: bool = False

    def to_bytes(self) -> bytes:
        return dumps({"until": self.until, "failures": self.failures, "reason": self.reason,
                      "throttled": self.throttled})  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Backoff:
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        failures = count(data.get("failures"))
        return cls(
            until=number(data.get("until")) or 0.0,
            failures=1 if failures is None else failures,
            reason=str(data.get("reason", "")),
            throttled=data.get("throttled") is True,
        )


def backoff(redis: Redis, tenant: str, account: str) -> Backoff | None:
    raw = redis.hget(backoff_key(tenant), account)
    return None if raw is None else Backoff.from_bytes(raw)


def backoff_until(redis: Redis, tenant: str, account: str) -> float:
    entry = backoff(redis, tenant, account)
    return entry.until if entry else 0.0


def failures(redis: Redis, tenant: str, account: str) -> int:
    """Failures in a row of the account that grow its back-off (0 when it has none)."""
    entry = backoff(redis, tenant, account)
    return entry.failures if entry else 0


def record_backoff(
    redis: Redis,
    tenant: str,
    account: str,
    until: float,
    reason: str,
    fence: Fence | None = None,
    *,
    throttled: bool = False,
) -> int:
    """Record a back-off; returns the failures in a row that grow it.

    `throttled` (a 429) waits as Graph asked and leaves that count alone, so throttling never
    stretches the back-off of a later 5xx.
    """
    before = failures(redis, tenant, account)
    entry = Backoff(until, before if throttled else before + 1, reason, throttled)
    fenced(redis, fence, lambda pipe: pipe.hset(backoff_key(tenant), account, entry.to_bytes()))
    return entry.failures


def clear_backoff(redis: Redis, tenant: str, account: str, fence: Fence | None = None) -> None:
    fenced(redis, fence, lambda pipe: pipe.hdel(backoff_key(tenant), account))


def backoffs(redis: Redis, tenant: str) -> dict[str, Backoff]:
    """Every account backing off, by account."""
    raw: dict[bytes, bytes] = redis.hgetall(backoff_key(tenant))  # type: ignore[assignment]
    return {text(a): Backoff.from_bytes(v) for a, v in sorted(raw.items())}


# ---- renewals owed: retried until the subscription's window closes ------------------------


@dataclass(frozen=True)
class OwedRenewal:
    """A renewal that failed and is owed until `until` (the subscription's expiry)."""

    subscription_id: str
    until: float
    since: float

    def to_bytes(self) -> bytes:
        return dumps({"subscription": self.subscription_id, "until": self.until,
                      "since": self.since})  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> OwedRenewal | None:
        data = loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("subscription"), str):
            return None
        return cls(data["subscription"], number(data.get("until")) or 0.0,
                   number(data.get("since")) or 0.0)  # fmt: skip


def owed_renewals(redis: Redis, tenant: str) -> dict[str, OwedRenewal]:
    """Every renewal owed, by account."""
    raw: dict[bytes, bytes] = redis.hgetall(owed_key(tenant))  # type: ignore[assignment]
    found = {text(a): OwedRenewal.from_bytes(v) for a, v in sorted(raw.items())}
    return {a: owed for a, owed in found.items() if owed is not None}


def owed_renewal(redis: Redis, tenant: str, account: str) -> OwedRenewal | None:
    raw = redis.hget(owed_key(tenant), account)
    return None if raw is None else OwedRenewal.from_bytes(raw)


def owe_renewal(
    redis: Redis, tenant: str, record: SubscriptionRecord, now: float, fence: Fence | None = None
) -> OwedRenewal:
    """Note that the record's renewal failed; the first failure's time is kept."""
    known = owed_renewal(redis, tenant, record.account)
    since = known.since if known and known.subscription_id == record.subscription_id else now
    owed = OwedRenewal(record.subscription_id, record.expires_at, since)
    fenced(redis, fence, lambda pipe: pipe.hset(owed_key(tenant), record.account, owed.to_bytes()))
    return owed


def settle_renewal(redis: Redis, tenant: str, account: str, fence: Fence | None = None) -> None:
    """Nothing is owed any more (renewed, replaced, or past its window)."""
    fenced(redis, fence, lambda pipe: pipe.hdel(owed_key(tenant), account))


# ---- status of the last reconcile, and the users polled instead ---------------------------


@dataclass(frozen=True)
class HeldSubscription:
    """One account's subscription as the last reconcile left it."""

    subscription: str
    users: int
    expires_at: float
    renewed_at: float

    @classmethod
    def from_record(cls, record: SubscriptionRecord) -> HeldSubscription:
        return cls(record.subscription_id, len(record.user_ids), record.expires_at,
                   record.renewed_at)  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeldSubscription:
        return cls(
            str(data.get("subscription", "")),
            count(data.get("users")) or 0,
            number(data.get("expires_at")) or 0.0,
            number(data.get("renewed_at")) or 0.0,
        )


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ReconcileStatus:
    reconciled_at: float | None = None
    accounts: dict[str, HeldSubscription] = field(default_factory=dict)
    subscribed: int = 0  # users covered by a subscription
    polled: int = 0
    polling_latency_bound: float | None = None  # seconds; None when nobody is polled
    deferred: dict[str, str] = field(default_factory=dict)  # account -> why
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored JSON shape, which the `status` command prints as is."""
        return asdict(self)

    def to_bytes(self) -> bytes:
        return dumps(self.to_json())

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> ReconcileStatus:
        data = loads(raw)
        if not isinstance(data, dict):
            return cls()
        held = data.get("accounts")
        return cls(
            reconciled_at=number(data.get("reconciled_at")),
            accounts={
                str(a): HeldSubscription.from_json(h)
                for a, h in (held.items() if isinstance(held, dict) else ())
                if isinstance(h, dict)
            },
            subscribed=count(data.get("subscribed")) or 0,
            polled=count(data.get("polled")) or 0,
            polling_latency_bound=number(data.get("polling_latency_bound")),
            deferred=_str_map(data.get("deferred")),
            failed=_str_map(data.get("failed")),
        )


def write_status(
    redis: Redis,
    tenant: str,
    status: ReconcileStatus,
    polled: Iterable[str],
    fence: Fence | None = None,
) -> None:
    """The status and the polled users together, so readers see one round's pair."""
    users = dumps(list(polled))

    def write(pipe: Batch) -> None:
        pipe.set(status_key(tenant), status.to_bytes())
        pipe.set(polled_key(tenant), users)

    fenced(redis, fence, write)


def queue_status(pipe: Batch, tenant: str) -> None:
    """Queue the read `status_from_raw` decodes."""
    pipe.get(status_key(tenant))


def status_from_raw(raw: bytes | str | None) -> ReconcileStatus | None:
    """None when the tenant was never reconciled."""
    return None if raw is None else ReconcileStatus.from_bytes(raw)


def read_status(redis: Redis, tenant: str) -> ReconcileStatus | None:
    return status_from_raw(redis.get(status_key(tenant)))


def queue_polled(pipe: Batch, tenant: str) -> None:
    """Queue the read `polled_from_raw` decodes."""
    pipe.get(polled_key(tenant))


def polled_from_raw(raw: bytes | str | None) -> list[str]:
    users = loads(raw)
    return [str(u) for u in users] if isinstance(users, list) else []


def polled_users(redis: Redis, tenant: str) -> list[str]:
    """The Graph user ids covered by polling, not by a subscription."""
    return polled_from_raw(redis.get(polled_key(tenant)))


# ---- an owed resync sweep -----------------------------------------------------------------


def request_sweep(redis: Redis, tenant: str, fence: Fence | None = None) -> None:
    """Ask for a sweep at the next clock tick (after a gap that could not sweep at once)."""
    fenced(redis, fence, lambda pipe: pipe.set(sweep_requested_key(tenant), "1"))


def sweep_owed(redis: Redis, tenant: str) -> bool:
    return bool(redis.exists(sweep_requested_key(tenant)))


def clear_sweep_request(redis: Redis, tenant: str, fence: Fence | None = None) -> None:
    fenced(redis, fence, lambda pipe: pipe.delete(sweep_requested_key(tenant)))
