"""core.state.profiles against a real Redis: the profile state codec and the transition log."""

from __future__ import annotations

import asyncio

import orjson
import redis
import redis.asyncio

from core.state import profiles
from core.state.profiles import EVENTS_KEPT, ProfileState

T = "contoso"
MID_MEETING = ProfileState(
    current="Teams Meeting", restore_to="Lunch", sticky_since=10.5, pending_profile="Lunch",
    pending_due=25.5, last_profile=None, last_sticky=False, availability="Available",
    activity="Available", version=3,
)  # fmt: skip


# ---- the codec ----------------------------------------------------------------------------


def test_state_from_empty_dict_is_fresh() -> None:
    assert ProfileState.from_dict({}) == ProfileState()


def test_state_from_mistyped_fields_falls_back_to_defaults() -> None:
    data = {"current": 3, "sticky_since": "yesterday", "version": True, "last_sticky": "yes"}
    assert ProfileState.from_dict(data) == ProfileState()


def test_state_round_trips_through_bytes() -> None:
    assert ProfileState.from_bytes(MID_MEETING.to_bytes()) == MID_MEETING


def test_stored_json_has_every_field_by_name() -> None:
    stored = orjson.loads(MID_MEETING.to_bytes())

    assert stored["current"] == "Teams Meeting" and stored["pending_due"] == 25.5
    assert set(stored) == set(ProfileState().to_dict())


def test_an_older_record_reads_with_defaults_for_what_it_lacks() -> None:
    older = orjson.dumps({"current": "Lunch", "restore_to": "Lunch", "version": 1, "gone": 1})

    assert ProfileState.from_bytes(older) == ProfileState(
        current="Lunch", restore_to="Lunch", version=1
    )


def test_a_missing_or_unreadable_value_is_the_initial_state() -> None:
    assert ProfileState.from_bytes(None) == ProfileState()
    assert ProfileState.from_bytes(b"not json") == ProfileState()
    assert ProfileState.from_bytes(b"[1, 2]") == ProfileState()


# ---- states in Redis ----------------------------------------------------------------------


def test_saved_states_load_in_the_order_asked_without_the_unknown(
    redis_client: redis.Redis,
) -> None:
    profiles.save(redis_client, T, {"bob": MID_MEETING, "alice": ProfileState(current="Away")})

    loaded = profiles.load(redis_client, T, ["bob", "nobody", "alice"])

    assert list(loaded) == ["bob", "alice"]
    assert (loaded["bob"], loaded["alice"]) == (MID_MEETING, ProfileState(current="Away"))


def test_a_pipeline_takes_the_write_and_the_read_as_queued_commands(
    redis_client: redis.Redis,
) -> None:
    pipe = redis_client.pipeline(transaction=False)
    profiles.save(pipe, T, {"alice": MID_MEETING})
    profiles.queue_load(pipe, T, ["alice", "bob"])
    profiles.queue_users(pipe, T)
    _, reply, users = pipe.execute()

    assert profiles.states_from(["alice", "bob"], reply) == {"alice": MID_MEETING}
    assert profiles.users_from(users) == ["alice"]


def test_saving_nothing_sends_nothing(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    profiles.save(pipe, T, {})

    assert len(pipe) == 0


def test_exists_sees_stored_states(redis_client: redis.Redis) -> None:
    profiles.save(redis_client, T, {"alice": ProfileState(), "bob": ProfileState()})

    assert profiles.exists(redis_client, T, "alice")
    assert not profiles.exists(redis_client, T, "carol")


def test_the_live_feed_reads_stored_bytes_as_they_are(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    profiles.save(sync, T, {"alice": MID_MEETING, "bob": ProfileState()})
    sync.close()

    async def read() -> tuple[dict[str, bytes], dict[str, bytes]]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            every = await profiles.load_all_raw(client, T)
            some = await profiles.load_raw(client, T, ["alice", "nobody"])
        finally:
            await client.aclose()
        return every, some

    every, some = asyncio.run(read())

    assert set(every) == {"alice", "bob"}
    assert some == {"alice": MID_MEETING.to_bytes()}


# ---- transitions --------------------------------------------------------------------------


def test_transitions_are_newest_first_and_stamped(redis_client: redis.Redis) -> None:
    profiles.record_event(redis_client, T, "alice", {"result": "decided", "profile": "Away"})
    profiles.record_events(redis_client, T, [("alice", {"result": "applied"}),
                                             ("bob", {"result": "applied"})])  # fmt: skip

    alice = profiles.recent_events(redis_client, T, "alice")

    assert [e["result"] for e in alice] == ["applied", "decided"]
    assert all(isinstance(e["at"], float) for e in alice)
    assert [e["result"] for e in profiles.recent_events(redis_client, T, "bob")] == ["applied"]


def test_the_transition_log_is_capped(redis_client: redis.Redis) -> None:
    for n in range(EVENTS_KEPT + 5):
        profiles.record_events(redis_client, T, [("alice", {"n": n})])

    kept = profiles.recent_events(redis_client, T, "alice")

    assert len(kept) == EVENTS_KEPT
    assert kept[0]["n"] == EVENTS_KEPT + 4
    assert [e["n"] for e in profiles.recent_events(redis_client, T, "alice", 2)] == [
        EVENTS_KEPT + 4, EVENTS_KEPT + 3,
    ]  # fmt: skip


def test_queued_transition_reads_decode_and_skip_what_is_unreadable(
    redis_client: redis.Redis,
) -> None:
    profiles.record_event(redis_client, T, "alice", {"result": "applied"})
    redis_client.lpush(profiles.events_key(T, "alice"), b"not json")
    pipe = redis_client.pipeline(transaction=False)
    profiles.queue_recent_events(pipe, T, "alice", 5)
    [reply] = pipe.execute()

    assert [e["result"] for e in profiles.events_from(reply)] == ["applied"]


def test_keys_keep_their_stored_names() -> None:
    assert profiles.profiles_key(T) == "pb:tenant:contoso:profiles"
    assert profiles.events_key(T, "alice") == "pb:tenant:contoso:events:alice"
