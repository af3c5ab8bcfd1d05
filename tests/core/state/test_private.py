"""The shared hash writer of the record modules, against a real Redis."""

from __future__ import annotations

import redis

from core.state._private import replace_hashes


def test_a_value_that_is_not_utf8_is_written_by_plain_hset(redis_client: redis.Redis) -> None:
    """The scripted fill carries JSON text; raw bytes take the ordinary command instead."""
    counts = replace_hashes(redis_client, {"pb:test:raw": [("a", b"\xff\xfe"), ("b", b"ok")]})

    assert counts == [2]
    assert redis_client.hgetall("pb:test:raw") == {b"a": b"\xff\xfe", b"b": b"ok"}
    assert redis_client.ttl("pb:test:raw") == -1
