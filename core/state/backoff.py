"""Shared back-off of a peer (a tenant's PBX, a tenant's Graph app) that every worker obeys.

A peer that throttles (429), is unavailable (503) or cannot be reached gets a rest: its record
says "backing off until T", T being its Retry-After or an exponential step with jitter,
capped. Until T no job calls it, on any worker; after T one caller at a time probes it (a
short lease, `SET NX`): the probe's success clears the record, its failure grows the step.
Each step is one script, so racing workers cannot count one outage twice.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from core.state._private import Batch, number, tenant_key, text

PBX = "pbx"
BASE_SECONDS = 2.0  # the first step without a Retry-After; it doubles per failed probe
MAX_SECONDS = 60.0  # the longest step without a Retry-After: a PBX back is used within a minute
MAX_RETRY_AFTER_SECONDS = 3600.0  # a longer Retry-After is capped (as `core.queue` caps it)
MIN_SECONDS = 1.0  # "Retry-After: 0" still rests a second: no busy loop of probes
PROBE_LEASE_SECONDS = 30.0  # how long one probe holds the peer; released when it answers
PROBE_WAIT_SECONDS = 2.0  # how soon a caller that met a probe in flight looks again
KEEP_SECONDS = 86_400  # a record nobody probed lapses a day after its time


def graph_peer(app_id: str) -> str:
    """Graph throttles per app per tenant: one record per tenant and app."""
    return f"graph:{app_id}"


def record_key(tenant: str, peer: str) -> str:
    """`pb:tenant:{t}:backoff:{peer}`: hash until, failures, status, reason, since, resume."""
    return tenant_key(tenant, f"backoff:{peer}")


def probe_key(tenant: str, peer: str) -> str:
    """`pb:tenant:{t}:backoff:{peer}:probe`: the lease of the one probe in flight."""
    return tenant_key(tenant, f"backoff:{peer}:probe")


@dataclass(frozen=True)
class Gate:
    """May the caller call the peer now? `probe`: it is the one probe, whose answer counts.
    While not `go`, `until` is when to look again."""

    go: bool
    probe: bool = False
    until: float = 0.0


@dataclass(frozen=True)
class BackoffState:
    """One peer's record, as the status page and `/metrics` show it."""

    tenant: str
    peer: str
    until: float
    failures: int
    status: int | None  # what the peer answered last; None: unreachable
    reason: str
    since: float

    @property
    def what(self) -> str:
        return "PBX" if self.peer == PBX else f"Graph app {self.peer.partition(':')[2]}"


# KEYS: record, lease. ARGV: now, lease token, lease ms, wait s.
_GATE = """
local untl = tonumber(redis.call('HGET', KEYS[1], 'until'))
if not untl then return {1, 0, '0'} end
local now = tonumber(ARGV[1])
if untl > now then return {0, 0, tostring(untl)} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {1, 1, tostring(untl)} end
return {0, 0, tostring(now + tonumber(ARGV[4]))}
"""

# KEYS: record, lease. ARGV: now, retry-after (-1: none), jitter in [0, 1), base, cap,
# status ('' : none), reason, min, max retry-after, keep.
_FAIL = """
local now = tonumber(ARGV[1])
local ra = tonumber(ARGV[2])
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if untl > now then
  -- Backing off already: a call that was in flight when the record was written. It counts
  -- for nothing more, but a later Retry-After is honoured.
  if ra >= 0 and now + ra > untl then
    untl = now + math.min(math.max(ra, tonumber(ARGV[8])), tonumber(ARGV[9]))
    redis.call('HSET', KEYS[1], 'until', tostring(untl))
  end
  return tostring(untl)
end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') + 1
local wait
if ra >= 0 then
  wait = math.min(ra, tonumber(ARGV[9]))
else
  local step = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (failures - 1))
  wait = step / 2 + step / 2 * tonumber(ARGV[3])
end
wait = math.max(wait, tonumber(ARGV[8]))
untl = now + wait
redis.call('HSET', KEYS[1], 'until', tostring(untl), 'failures', failures, 'status', ARGV[6],
           'reason', ARGV[7])
if failures == 1 then redis.call('HSET', KEYS[1], 'since', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], math.ceil(wait) + tonumber(ARGV[10]))
redis.call('DEL', KEYS[2])
return tostring(untl)
"""

# KEYS: record. ARGV: at, now. 1 when no resume is due later than now (the caller schedules
# one); a resume job runs at or after its time, so it may claim the next one itself.
_RESUME = """
local resume = tonumber(redis.call('HGET', KEYS[1], 'resume') or '0')
if resume > tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'resume', ARGV[1]) end
return 1
"""


class Backoff:
    """One peer's shared back-off. Cheap to build; every operation is one round trip."""

    def __init__(
        self,
        redis: Redis,
        tenant: str,
        peer: str,
        *,
        clock: Any = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.tenant = tenant
        self.peer = peer
        self._clock = clock
        self._rng = rng or random.Random()
        self._keys = [record_key(tenant, peer), probe_key(tenant, peer)]
        self._token = secrets.token_hex(8)
        self._gate = redis.register_script(_GATE)
        self._fail = redis.register_script(_FAIL)
        self._resume = redis.register_script(_RESUME)

    def gate(self) -> Gate:
        """Whether to call now; a `probe` must report back (`succeeded` / `failed` / `release`)."""
        lease_ms = int(PROBE_LEASE_SECONDS * 1000)
        go, probe, until = self._gate(
            keys=self._keys, args=[self._clock(), self._token, lease_ms, PROBE_WAIT_SECONDS]
        )
        return Gate(bool(go), bool(probe), float(until))

    def failed(self, status: int | None, retry_after: float | None, reason: str) -> float:
        """The peer refused or is away: when it may be called again (epoch seconds)."""
        until = self._fail(keys=self._keys, args=[
            self._clock(), -1 if retry_after is None else max(retry_after, 0.0),
            self._rng.random(), BASE_SECONDS, MAX_SECONDS, "" if status is None else status,
            reason[:200], MIN_SECONDS, MAX_RETRY_AFTER_SECONDS, KEEP_SECONDS,
        ])  # fmt: skip
        return float(until)

    def succeeded(self) -> bool:
        """The probe went through: everyone may call again. True when a record was cleared."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._keys[0])
        pipe.delete(self._keys[1])
        cleared, _ = pipe.execute()
        return bool(cleared)

    def release(self) -> None:
        """The probe ended without a verdict (a bug, a refusal): the next caller probes."""
        self.redis.delete(self._keys[1])

    def claim_resume(self, at: float) -> bool:
        """True when the caller should schedule the peer's resumption at `at`: no resume is
        due later than now already (many deferred jobs, one scheduled resume)."""
        return bool(self._resume(keys=self._keys[:1], args=[at, self._clock()]))

    def state(self) -> BackoffState | None:
        return state_from(self.tenant, self.peer, self.redis.hgetall(self._keys[0]))


def pbx(redis: Redis, tenant: str) -> Backoff:
    """The back-off of the tenant's PBX (its adapter's target)."""
    return Backoff(redis, tenant, PBX)


def graph(redis: Redis, tenant: str, app_id: str) -> Backoff:
    """The back-off of the tenant's Graph app."""
    return Backoff(redis, tenant, graph_peer(app_id))


def queue_read(pipe: Batch, tenant: str, peers: Sequence[str]) -> None:
    """Add the tenant's records of these peers to a read batch (`states_from` decodes)."""
    for peer in peers:
        pipe.hgetall(record_key(tenant, peer))


def state_from(tenant: str, peer: str, raw: dict[Any, Any]) -> BackoffState | None:
    fields = {text(k): text(v) for k, v in raw.items()}
    until = number(fields.get("until"))
    if until is None:
        return None
    status = number(fields.get("status"))
    return BackoffState(
        tenant,
        peer,
        until,
        int(number(fields.get("failures")) or 0),
        None if status is None else int(status),
        fields.get("reason", ""),
        number(fields.get("since")) or until,
    )


def states_from(tenant: str, peers: Sequence[str], raws: Sequence[Any]) -> list[BackoffState]:
    found = (state_from(tenant, p, r or {}) for p, r in zip(peers, raws, strict=True))
    return [s for s in found if s is not None]


def backing_off(redis: Redis, tenant: str, peers: Sequence[str]) -> list[BackoffState]:
    """The tenant's peers that have a back-off record (due or not)."""
    pipe = redis.pipeline(transaction=False)
    queue_read(pipe, tenant, peers)
    return states_from(tenant, peers, pipe.execute())


def seconds_left(state: BackoffState, now: float) -> float:
    """Tenths of a second until the peer may be probed; 0 once it may (or a probe runs)."""
    return max(math.ceil((state.until - now) * 10) / 10, 0.0)
