"""The shared hash writer of the record modules, against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from core.state._private import WRITE_CHUNK, replace_hashes


def test_a_value_that_is_not_utf8_is_written_by_plain_hset(redis_client: redis.Redis) -> None:
    """The scripted fill carries JSON text; raw bytes take the ordinary command instead."""
    counts = replace_hashes(redis_client, {"pb:test:raw": [("a", b"\xff\xfe"), ("b", b"ok")]})

    assert counts == [2]
    assert redis_client.hgetall("pb:test:raw") == {b"a": b"\xff\xfe", b"b": b"ok"}
    assert redis_client.ttl("pb:test:raw") == -1


def test_a_fill_that_fails_midway_leaves_the_previous_hash_and_a_usable_client(
    redis_client: redis.Redis,
) -> None:
    """Chunks already sent unanswered are dropped with their connection; nothing half-done."""
    replace_hashes(redis_client, {"pb:test:h": [("old", b"1")]})

    def items() -> Iterator[tuple[str, bytes]]:
        for n in range(2 * WRITE_CHUNK):
            yield f"f{n}", b"2"
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError):
        replace_hashes(redis_client, {"pb:test:h": items()})

    assert redis_client.hgetall("pb:test:h") == {b"old": b"1"}
    assert redis_client.keys("pb:test:h:tmp:*") == []
    assert replace_hashes(redis_client, {"pb:test:h": [("new", b"3")]}) == [1]
