"""The call-state records: calls a source reported, its status, its counter fields."""

from __future__ import annotations

import redis

from core.state import callstate
from core.state.callstate import SourceStatus

TENANT, SOURCE = "contoso", "ami"


def report(client: redis.Redis, kind: str, user: str, call_id: str, now: float) -> None:
    pipe = client.pipeline(transaction=True)
    item = {"type": kind, "user": user, "call_id": call_id}
    callstate.queue_report(pipe, TENANT, SOURCE, item, now)
    pipe.execute()


def test_started_calls_are_kept_until_they_end(redis_client: redis.Redis) -> None:
    report(redis_client, "call_started", "alice", "1.5", 100.0)
    report(redis_client, "call_started", "bob", "1.5", 101.0)
    report(redis_client, "call_started", "alice", "2.7", 102.0)
    report(redis_client, "call_ended", "alice", "1.5", 103.0)
    assert callstate.reported(redis_client, TENANT, SOURCE) == [
        ("alice", "2.7", 102.0),
        ("bob", "1.5", 101.0),
    ]
    assert callstate.reported(redis_client, TENANT, "blf") == []  # per source


def test_unreadable_entries_are_skipped(redis_client: redis.Redis) -> None:
    key = callstate.calls_key(TENANT, SOURCE)
    redis_client.hset(key, mapping={"not json": "{}", '["alice", "1.5"]': "garbage"})
    assert callstate.reported(redis_client, TENANT, SOURCE) == [("alice", "1.5", 0.0)]


def test_the_status_expires_with_its_listener(redis_client: redis.Redis) -> None:
    status = SourceStatus("host-1", True, 2, 100.0)
    callstate.save_status(redis_client, TENANT, SOURCE, status, ttl_seconds=30)
    assert callstate.status(redis_client, TENANT, SOURCE) == status
    assert 0 < redis_client.pttl(callstate.status_key(TENANT, SOURCE)) <= 30_000
    redis_client.delete(callstate.status_key(TENANT, SOURCE))
    assert callstate.status(redis_client, TENANT, SOURCE) is None


def test_an_unreadable_status_reads_with_defaults() -> None:
    assert SourceStatus.from_bytes(b'{"connected": 1, "active_calls": true}') == SourceStatus(
        "", False, 0, 0.0
    )
    assert SourceStatus.from_bytes(b"[]") is None


def test_counter_fields_name_tenant_source_and_event() -> None:
    field = callstate.counter_field(TENANT, SOURCE, "connects")
    assert callstate.parse_counter_field(field.encode()) == (TENANT, SOURCE, "connects")
    assert callstate.parse_counter_field("accepted") is None
    assert callstate.parse_counter_field("callstate:odd") is None
