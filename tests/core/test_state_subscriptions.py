"""core.state.subscriptions: codecs, one writer of `pb:sub:{id}`, and older stored values."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
import redis

from core.state import subscriptions as sub_state
from core.state.coordination import FenceLost, LeaderLock
from core.state.subscriptions import (
    Backoff,
    HeldSubscription,
    ReconcileStatus,
    Registration,
    SubscriptionRecord,
)

T = "contoso"
DIGEST = sub_state.client_state_digest("client-state-" + "x" * 40)


def held(sid: str = "s1", cert: str | None = "cert-1") -> SubscriptionRecord:
    return SubscriptionRecord(sid, T, DIGEST, "svc@x", ("u1", "u2"), 2000.5, 1000.0, 1500.25, cert)


def stored_fields(client: redis.Redis, sid: str) -> dict[str, bytes]:
    raw: dict[bytes, bytes] = client.hgetall(sub_state.subscription_key(sid))  # type: ignore[assignment]
    return {k.decode(): v for k, v in raw.items()}


def test_a_saved_record_reads_back_whole(redis_client: redis.Redis) -> None:
    sub_state.save(redis_client, held())

    assert sub_state.read(redis_client, "s1") == held()
    assert sub_state.load(redis_client, T) == {"svc@x": held()}
    assert sub_state.registration(redis_client, "s1") == Registration("s1", T, DIGEST)
    assert sub_state.tenant_records(redis_client, T) == [held()]


def test_saving_replaces_the_whole_hash_so_no_stale_field_survives(
    redis_client: redis.Redis,
) -> None:
    sub_state.save(redis_client, held(cert="cert-1"))
    sub_state.save(redis_client, held(cert=None))

    assert "certificate_id" not in stored_fields(redis_client, "s1")
    assert sub_state.read(redis_client, "s1") == held(cert=None)


def test_a_renewal_keeps_the_client_state_digest(redis_client: redis.Redis) -> None:
    sub_state.save(redis_client, held())
    loaded = sub_state.load(redis_client, T)["svc@x"]
    sub_state.save(redis_client, replace(loaded, expires_at=9000.0, renewed_at=8000.0))

    assert sub_state.registered_for(redis_client, "s1", T)
    assert stored_fields(redis_client, "s1")["client_state_sha256"] == DIGEST


def test_a_bare_registration_is_stored_as_the_webhook_reads_it(redis_client: redis.Redis) -> None:
    sub_state.register(redis_client, "bare", T, "client-state-" + "x" * 40)

    bare = {"tenant": T.encode(), "client_state_sha256": DIGEST}
    assert stored_fields(redis_client, "bare") == bare
    record = sub_state.read(redis_client, "bare")
    assert record is not None and not record.managed
    assert sub_state.registered_for(redis_client, "bare", T)
    assert not sub_state.registered_for(redis_client, "bare", "fabrikam")
    assert sub_state.load(redis_client, T) == {}


def test_a_record_written_by_the_two_old_writers_still_reads(redis_client: redis.Redis) -> None:
    # The webhook's fields first, then the clock's merged in by a second HSET.
    key = sub_state.subscription_key("old")
    redis_client.hset(key, mapping={"tenant": T, "client_state_sha256": DIGEST})
    redis_client.hset(key, mapping={
        "account": "svc@x", "users": orjson.dumps(["u1", "u2"]).decode(),
        "expires_at": repr(2000.5), "created_at": repr(1000.0), "renewed_at": repr(1500.25),
    })  # fmt: skip
    redis_client.sadd(sub_state.tenant_subscriptions_key(T), "old")
    redis_client.hset(sub_state.accounts_key(T), "svc@x", "old")

    assert sub_state.load(redis_client, T) == {"svc@x": held("old", cert=None)}


def test_an_old_half_written_record_reads_as_absent(redis_client: redis.Redis) -> None:
    # The clock's fields merged into a hash whose webhook part was gone: unusable.
    redis_client.hset(sub_state.subscription_key("half"), mapping={
        "account": "svc@x", "users": "[]", "expires_at": "2000.0",
    })  # fmt: skip
    redis_client.sadd(sub_state.tenant_subscriptions_key(T), "half")
    redis_client.hset(sub_state.accounts_key(T), "svc@x", "half")

    assert sub_state.read(redis_client, "half") is None
    assert sub_state.registration(redis_client, "half") is None
    assert sub_state.load(redis_client, T) == {}
    assert sub_state.tenant_records(redis_client, T) == []


def test_unreadable_clock_fields_fall_back_to_defaults() -> None:
    raw = {b"tenant": T.encode(), b"client_state_sha256": DIGEST, b"account": b"svc@x",
           b"users": b"not json", b"expires_at": b"soon"}  # fmt: skip

    record = SubscriptionRecord.from_fields("s1", raw)

    assert record == SubscriptionRecord("s1", T, DIGEST, "svc@x")


def test_forget_leaves_the_index_to_a_newer_subscription(redis_client: redis.Redis) -> None:
    old, new = held("old"), held("new")
    sub_state.save(redis_client, old)
    sub_state.save(redis_client, new)  # the account's index now names "new"

    sub_state.forget(redis_client, old)

    assert sub_state.read(redis_client, "old") is None
    assert sub_state.load(redis_client, T) == {"svc@x": new}
    sub_state.forget(redis_client, new)
    assert sub_state.load(redis_client, T) == {}
    assert redis_client.exists(sub_state.tenant_subscriptions_key(T)) == 0


def test_registrations_are_read_in_the_callers_pipeline(redis_client: redis.Redis) -> None:
    sub_state.save(redis_client, held())
    pipe = redis_client.pipeline(transaction=False)
    sub_state.queue_registration(pipe, "s1")
    sub_state.queue_registration(pipe, "missing")
    sub_state.queue_count(pipe, T)
    found, missing, count = pipe.execute()

    assert sub_state.registration_from_row("s1", found) == Registration("s1", T, DIGEST)
    assert sub_state.registration_from_row("missing", missing) is None
    assert count == 1


def test_backoff_round_trip_and_count(redis_client: redis.Redis) -> None:
    entry = Backoff(60.0, 3, "Graph 503")
    assert Backoff.from_bytes(entry.to_bytes()) == entry
    assert sub_state.record_backoff(redis_client, T, "svc@x", 60.0, "Graph 503") == 1
    assert sub_state.record_backoff(redis_client, T, "svc@x", 120.0, "Graph 503") == 2
    assert sub_state.backoff_until(redis_client, T, "svc@x") == 120.0
    assert sub_state.backoffs(redis_client, T) == {"svc@x": Backoff(120.0, 2, "Graph 503")}

    sub_state.clear_backoff(redis_client, T, "svc@x")

    assert (sub_state.failures(redis_client, T, "svc@x"), sub_state.backoffs(redis_client, T)) == (
        0, {}
    )  # fmt: skip


def test_an_older_backoff_entry_without_a_count_is_one_failure() -> None:
    assert Backoff.from_bytes(b'{"until": 60}') == Backoff(60.0, 1, "")
    assert Backoff.from_bytes(b"garbage") == Backoff()


def status() -> ReconcileStatus:
    return ReconcileStatus(
        reconciled_at=1000.0,
        accounts={"svc@x": HeldSubscription("s1", 2, 2000.5, 1500.25)},
        subscribed=2, polled=1, polling_latency_bound=15.0,
        deferred={"b@x": "backing off"}, failed={"c@x": "403"},
    )  # fmt: skip


def test_reconcile_status_round_trip_keeps_the_stored_shape(redis_client: redis.Redis) -> None:
    sub_state.write_status(redis_client, T, status(), ["g9"])

    assert sub_state.read_status(redis_client, T) == status()
    assert sub_state.polled_users(redis_client, T) == ["g9"]
    assert orjson.loads(redis_client.get(sub_state.status_key(T)) or b"") == {
        "reconciled_at": 1000.0,
        "accounts": {"svc@x": {"subscription": "s1", "users": 2, "expires_at": 2000.5,
                               "renewed_at": 1500.25}},
        "subscribed": 2, "polled": 1, "polling_latency_bound": 15.0,
        "deferred": {"b@x": "backing off"}, "failed": {"c@x": "403"},
    }  # fmt: skip


def test_an_older_partial_status_reads_with_defaults() -> None:
    older = ReconcileStatus.from_bytes(b'{"subscribed": 3, "polled": 1, "later_field": true}')

    assert older == ReconcileStatus(subscribed=3, polled=1)
    assert ReconcileStatus.from_bytes(b"[]") == ReconcileStatus()


def test_a_tenant_never_reconciled_has_no_status_and_polls_nobody(
    redis_client: redis.Redis,
) -> None:
    assert sub_state.read_status(redis_client, T) is None
    assert sub_state.polled_users(redis_client, T) == []


def test_a_sweep_request_lasts_until_cleared(redis_client: redis.Redis) -> None:
    assert not sub_state.sweep_owed(redis_client, T)
    sub_state.request_sweep(redis_client, T)
    assert sub_state.sweep_owed(redis_client, T)
    sub_state.clear_sweep_request(redis_client, T)
    assert not sub_state.sweep_owed(redis_client, T)


def test_a_throttle_leaves_the_failure_count_alone(redis_client: redis.Redis) -> None:
    sub_state.record_backoff(redis_client, T, "svc@x", 1060.0, "Graph 503")
    count = sub_state.record_backoff(redis_client, T, "svc@x", 1100.0, "Graph 429", throttled=True)

    assert count == 1
    assert sub_state.backoff(redis_client, T, "svc@x") == Backoff(1100.0, 1, "Graph 429", True)


def test_an_owed_renewal_keeps_its_first_failure_and_a_save_settles_it(
    redis_client: redis.Redis,
) -> None:
    sub_state.save(redis_client, held())
    sub_state.owe_renewal(redis_client, T, held(), 1600.0)
    sub_state.owe_renewal(redis_client, T, held(), 1700.0)

    assert sub_state.owed_renewals(redis_client, T) == {
        "svc@x": sub_state.OwedRenewal("s1", 2000.5, 1600.0)
    }
    sub_state.save(redis_client, replace(held(), expires_at=5000.0, renewed_at=1700.0))
    assert sub_state.owed_renewals(redis_client, T) == {}


def test_a_save_under_a_term_that_is_over_changes_nothing(redis_client: redis.Redis) -> None:
    lock = LeaderLock(redis_client, "clock", 30)
    assert lock.acquire()
    term = lock.fence
    lock.release()  # over: released (or expired, or taken over)

    with pytest.raises(FenceLost):
        sub_state.save(redis_client, held(), term)
    assert sub_state.read(redis_client, "s1") is None
    assert sub_state.load(redis_client, T) == {}
