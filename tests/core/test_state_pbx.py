"""core.state.pbx against a real Redis: builtin profiles and their stream, adapter state,
and the http adapter's shared token and fetch lock."""

from __future__ import annotations

import asyncio
import math

import orjson
import redis
import redis.asyncio

from core.state import pbx
from core.state.pbx import BuiltinEvent, BuiltinProfile, PbxToken

T = "contoso"
ALICE = BuiltinProfile("alice", "Teams Meeting", "Busy", "InAMeeting", 3, 12.5)


# ---- builtin profiles ---------------------------------------------------------------------


def test_builtin_profile_json_keeps_its_served_shape() -> None:
    assert orjson.loads(ALICE.to_bytes()) == {
        "user": "alice", "profile": "Teams Meeting", "availability": "Busy",
        "activity": "InAMeeting", "version": 3, "updated_at": 12.5,
    }  # fmt: skip
    assert BuiltinProfile.from_bytes(ALICE.to_bytes()) == ALICE


def test_an_incomplete_builtin_profile_reads_with_defaults() -> None:
    assert BuiltinProfile.from_bytes(b'{"profile": "Away", "version": "x"}', "bob") == (
        BuiltinProfile("bob", "Away")
    )
    assert BuiltinProfile.from_bytes(None) is None
    assert BuiltinProfile.from_bytes(b"[]") is None


def test_published_profiles_are_served_and_streamed_once_per_user(
    redis_client: redis.Redis,
) -> None:
    older = BuiltinProfile("alice", "Away", version=2)
    pipe = redis_client.pipeline(transaction=False)
    pbx.publish_builtin(pipe, T, [older, ALICE, BuiltinProfile("bob", "Busy")])
    pipe.execute()

    assert pbx.builtin_profile(redis_client, T, "alice") == ALICE
    assert pbx.builtin_profile(redis_client, T, "nobody") is None
    assert pbx.builtin_profiles(redis_client, T, ["bob", "nobody"]) == {
        "bob": BuiltinProfile("bob", "Busy")
    }
    assert pbx.builtin_count(redis_client, T) == 2
    streamed: list[tuple[bytes, dict[bytes, bytes]]] = redis_client.xrange(  # type: ignore[assignment]
        pbx.builtin_events_key(T)
    )
    assert [BuiltinProfile.from_bytes(f[b"data"]) for _, f in streamed] == [
        ALICE, BuiltinProfile("bob", "Busy"),
    ]  # fmt: skip


def test_publishing_nothing_sends_nothing(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    pbx.publish_builtin(pipe, T, [])

    assert len(pipe) == 0


def test_the_web_side_reads_profiles_and_follows_the_stream(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)

    async def follow() -> tuple[str, str, list[BuiltinEvent], list[BuiltinProfile]]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            before = await pbx.builtin_events_position(client, T)
            pbx.publish_builtin(sync, T, [ALICE])
            after = await pbx.builtin_events_position(client, T)
            read = await pbx.read_builtin_events(client, {T: before}, block_ms=1000, count=10)
            served = await pbx.read_builtin_profiles(client, T)
            assert await pbx.read_builtin_profile(client, T, "alice") == ALICE
        finally:
            await client.aclose()
        return before, after, read, served

    try:
        before, after, read, served = asyncio.run(follow())
    finally:
        sync.close()

    assert before == "0-0"  # no stream yet
    assert [(e.tenant, e.id, e.profile) for e in read] == [(T, after, ALICE)]
    assert served == [ALICE]


# ---- adapter state ------------------------------------------------------------------------


def test_adapter_state_is_kept_as_the_adapter_wrote_it(redis_client: redis.Redis) -> None:
    assert pbx.adapter_state(redis_client, T) is None

    pbx.save_adapter_state(redis_client, T, '{"format": 1, "users": {}}')

    assert pbx.adapter_state(redis_client, T) == '{"format": 1, "users": {}}'


# ---- the shared PBX token -----------------------------------------------------------------


def test_a_token_without_lifetime_survives_its_codec() -> None:
    forever = PbxToken("abc", math.inf, "digest")

    assert PbxToken.from_bytes(forever.to_bytes()) == forever


def test_an_unreadable_token_reads_as_none() -> None:
    assert PbxToken.from_bytes(b"not json") is None
    assert PbxToken.from_bytes(b'{"expires_at": 5}') is None
    assert PbxToken.from_bytes(b'{"access_token": "abc", "expires_at": "soon"}') is None
    assert PbxToken.from_bytes(b'{"access_token": "abc", "expires_at": 5}') == PbxToken("abc", 5)


def test_a_sealed_token_is_dropped_only_while_it_is_the_stored_one(
    redis_client: redis.Redis,
) -> None:
    pbx.save_sealed_token(redis_client, T, b"first", ttl=60)
    pbx.save_sealed_token(redis_client, T, b"second", ttl=None)

    pbx.drop_sealed_token(redis_client, T, b"first")
    assert pbx.sealed_token(redis_client, T) == b"second"
    assert redis_client.ttl(pbx.token_key(T)) == -1  # no expiry asked: kept until replaced
    pbx.drop_sealed_token(redis_client, T, b"second")
    assert pbx.sealed_token(redis_client, T) is None


def test_only_the_owner_releases_the_fetch_lock(redis_client: redis.Redis) -> None:
    assert pbx.take_token_lock(redis_client, T, "one", 10_000)
    assert not pbx.take_token_lock(redis_client, T, "two", 10_000)

    pbx.release_token_lock(redis_client, T, "two")
    assert not pbx.take_token_lock(redis_client, T, "two", 10_000)
    pbx.release_token_lock(redis_client, T, "one")
    assert pbx.take_token_lock(redis_client, T, "two", 10_000)


def test_keys_keep_their_stored_names() -> None:
    assert [pbx.builtin_key(T), pbx.builtin_events_key(T), pbx.adapter_state_key(T),
            pbx.token_key(T), pbx.token_lock_key(T)] == [
        "pb:tenant:contoso:builtin", "pb:tenant:contoso:builtin:events",
        "pb:tenant:contoso:adapter-state", "pb:tenant:contoso:pbx-token",
        "pb:tenant:contoso:pbx-token:lock",
    ]  # fmt: skip
