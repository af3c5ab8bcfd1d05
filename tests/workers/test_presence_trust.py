"""What a notification says cannot pin a user's state: a read of Graph (a basic notification's
read, the sweep, polling) observed later is authoritative; garbage sequence numbers are not
ordered by; ids that are not the tenant's linked users are never stored."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from core.settings import MappingSettings
from core.state import links, presence
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import FROM_NOTIFICATION, BatchResult, PresenceUpdate, process

T = "contoso"
RULES = compile_rules(MappingSettings(preset="glocom"))


def run(client: redis.Redis, *updates: PresenceUpdate) -> BatchResult:
    result = process(client, T, RULES, 0.0, list(updates), now=1000.0)
    deliver(client, T, BuiltinAdapter(client, T), [c.user for c in result.changes])
    return result


def shown(client: redis.Redis, user: str) -> str | None:
    return BuiltinAdapter(client, T).read_profile(user)


def notified(graph_id: str, state: str, sequence: object, at: float) -> PresenceUpdate:
    """What `workers.rich` hands on for a rich notification."""
    item = {"id": graph_id, "availability": state, "activity": state, "sequenceNumber": sequence}
    return PresenceUpdate.from_graph({**item, FROM_NOTIFICATION: True}, at)


def read(graph_id: str, state: str, sequence: object, at: float) -> PresenceUpdate:
    """What the sweep, polling and basic notifications get from getPresencesByUserId."""
    item = {"id": graph_id, "availability": state, "activity": state, "sequenceNumber": sequence}
    return PresenceUpdate.from_graph(item, at)


@pytest.fixture
def alice(redis_client: redis.Redis) -> str:
    links.replace(redis_client, T, {"g1": ["alice"]})
    return "g1"


def test_a_later_read_is_applied_over_a_far_ahead_notification_sequence(
    redis_client: redis.Redis, alice: str
) -> None:
    """The finding: one accepted rich item with a huge sequenceNumber held the profile for
    good, the sweep's reads included."""
    run(redis_client, notified(alice, "Busy", "z" * 64, at=100.0))
    result = run(redis_client, read(alice, "Available", "00000000000000000007", at=200.0))
    assert (result.stale, shown(redis_client, "alice")) == (0, "Available")


def test_after_the_read_notifications_are_ordered_by_graphs_sequence_again(
    redis_client: redis.Redis, alice: str
) -> None:
    run(redis_client, notified(alice, "Busy", "z" * 64, at=100.0))
    run(redis_client, read(alice, "Available", "00000000000000000007", at=200.0))
    run(redis_client, notified(alice, "Away", "00000000000000000008", at=300.0))
    assert shown(redis_client, "alice") == "Away"


def test_a_later_read_is_applied_over_a_notification_that_copied_its_sequence(
    redis_client: redis.Redis, alice: str
) -> None:
    """Found by hypothesis: an equal sequence number made the sweep's read a 'duplicate'."""
    run(redis_client, notified(alice, "Busy", "00000000000000000007", at=100.0))
    result = run(redis_client, read(alice, "Available", "00000000000000000007", at=200.0))
    assert (result.duplicate, shown(redis_client, "alice")) == (0, "Available")


def test_a_read_observed_before_the_stored_presence_is_still_stale(
    redis_client: redis.Redis, alice: str
) -> None:
    run(redis_client, notified(alice, "Busy", "00000000000000000009", at=100.0))
    result = run(redis_client, read(alice, "Available", "00000000000000000008", at=50.0))
    assert (result.stale, shown(redis_client, "alice")) == (1, "Busy")


def test_a_notification_behind_the_stored_sequence_is_stale_however_late_it_comes(
    redis_client: redis.Redis, alice: str
) -> None:
    """Graph retries notifications for hours: arriving later does not make one newer."""
    run(redis_client, read(alice, "Busy", "00000000000000000009", at=100.0))
    result = run(redis_client, notified(alice, "Available", "00000000000000000008", at=900.0))
    assert (result.stale, shown(redis_client, "alice")) == (1, "Busy")


@pytest.mark.parametrize(
    "sequence",
    ["z" * 65, "ü", "a b", "", -1, 10**20, True, 1.5, ["1"], {"n": 1}, None],
    ids=repr,
)
def test_what_cannot_be_a_sequence_number_is_not_ordered_by(sequence: object) -> None:
    assert read("g1", "Away", sequence, at=1.0).sequence is None


@pytest.mark.parametrize(
    ("number", "text"), [(7, "00000000000000000007"), (10, "00000000000000000010")]
)
def test_an_integer_sequence_number_sorts_as_a_number(number: int, text: str) -> None:
    assert read("g1", "Away", number, at=1.0).sequence == text


def test_an_unlinked_id_is_not_stored_in_the_tenants_presence_hash(
    redis_client: redis.Redis, alice: str
) -> None:
    """The finding: a tenant's presence hash could be padded with ids of nobody it links."""
    foreign = [read(str(uuid.uuid4()), "Away", None, at=1.0) for _ in range(50)]
    result = run(redis_client, read(alice, "Away", None, at=1.0), *foreign)
    assert result.unlinked == 50
    stored = presence.read_last(redis_client, T, [alice, *(u.user_id for u in foreign)])
    assert [p is not None for p in stored] == [True] + [False] * 50


sequences = st.text(max_size=70) | st.integers() | st.none() | st.sampled_from(["z" * 64, "~"])
states = st.sampled_from(["Available", "Busy", "Away", "DoNotDisturb"])


@given(
    noise=st.lists(
        st.tuples(st.booleans(), states, sequences, st.floats(min_value=0, max_value=1e6)),
        max_size=6,
    ),
    final=states,
)
def test_whatever_came_before_a_later_read_decides(
    redis_client: redis.Redis,
    noise: list[tuple[bool, str, object, float]],
    final: str,
) -> None:
    graph_id = str(uuid.uuid4())
    pbx_user = f"u-{graph_id[:8]}"
    links.replace(redis_client, T, {graph_id: [pbx_user]})
    for is_notified, state, sequence, at in noise:
        make = notified if is_notified else read
        run(redis_client, make(graph_id, state, sequence, at))
    run(redis_client, read(graph_id, final, "00000000000000000001", at=2e6))
    [last] = presence.read_last(redis_client, T, [graph_id])
    assert last is not None and last.availability == final
